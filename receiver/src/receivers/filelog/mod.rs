//! The `filelog` receiver (alias `file_log`): tails files, one LogRecord per
//! line (or multiline block), with the OOM pattern library's attributes on
//! matching lines, and the `oom.log.matches` counter.
//!
//! Files are identified by a fingerprint of their first bytes, not by name
//! or inode, so renames (rename+create rotation) and copies (copytruncate)
//! are followed: a renamed file keeps being read through its open handle to
//! its end; a truncated file is read again from its start, and a copy with a
//! known fingerprint continues at the known offset instead of being read
//! twice. Offsets advance only when the batch carrying the lines was
//! acknowledged (see [`checkpoint`]); with `storage`, a restart resumes
//! there, and files that appeared while the agent was down are read from
//! their start even with `start_at: end` (the collector skips them).
//!
//! Delivery is at least once across restarts: lines of a batch that failed
//! downstream are read again after a restart; the receiver does not resend
//! them while it runs. Inherent windows: with copytruncate, lines written
//! between the copy and the truncation are lost (logrotate's own window);
//! when the copy is not in `include`, lines written between the last poll
//! and the truncation are lost too.

pub mod checkpoint;
pub mod config;
pub mod container;
mod glob_cache;
mod line_records;
pub mod metrics;
pub mod multiline;
pub mod reader;
pub(crate) mod watch;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aho_corasick::AhoCorasick;
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs};
use opentelemetry_proto::tonic::resource::v1::Resource;
use regex::Regex;
use tokio::runtime::Handle;
use tokio::sync::{mpsc, Semaphore};
use tokio::task::JoinHandle;

use super::ReceiverOutputs;
use crate::component::{
    BuildContext, Factory, ReceiverConfig, ReceiverFactory, Stability, StartFuture,
};
use crate::config::{from_node, ConfigError, Node};
use crate::incidents::{self, runtime::WriterFinder, Identity};
use crate::kernel_log::report_record::{self, KERNEL_RUNTIME};
use crate::kernel_log::text_reports::{TextEvent, TextReports};
use crate::patterns::match_counts::MatchCounts;
use crate::patterns::Library;
use crate::pipeline::ack::BatchNotifier;
use crate::pipeline::data::{kv_str, scoped_logs};
use crate::pipeline::{consume_retrying, ConsumeError, DynConsumer, Payload, Signal};
use checkpoint::{Checkpoints, InFlight, Resumed};
pub use config::{ByteSize, FilelogReceiverConfig, LogFormat, MultilineConfig, StartAt};
use container::Decoder;
use multiline::{Assembled, Assembler};
use reader::{fingerprint, FileReader, FileStat, ReadOutcome};

/// Batches sent and not yet acknowledged, per receiver.
const MAX_IN_FLIGHT: usize = 64;
/// Records per batch.
const MAX_BATCH_RECORDS: usize = 1000;
/// Bytes read from one file per poll before moving on to the others.
const MAX_READ_PER_FILE_POLL: usize = 16 * 1024 * 1024;
/// Bytes read per read step (lines are handed on between steps).
const READ_STEP: usize = 1024 * 1024;
/// Lines read per step while a record is being grouped (a stack trace) or
/// a file's format is not known yet: those lines are handled one by one,
/// and only until the fast skipping read can take over again.
const LINE_BY_LINE_STEP: usize = 64;
/// Bytes per read call of the fast skipping read.
const SCAN_CHUNK: usize = 256 * 1024;
/// Polls a file that no longer matches `include` stays open (a writer may
/// still append to a renamed file until it reopens its log).
const CLOSE_AFTER_UNMATCHED_POLLS: u32 = 3;
/// Text that starts a kernel OOM report (or what is left of one whose
/// header the kernel's rate limit dropped).
pub(crate) const REPORT_LITERALS: &[&str] = &[
    " invoked oom-killer: ",
    "oom-kill:constraint=",
    "Killed process ",
    "ill process ",
];
/// What a log reader's finder looks for (filelog and journald): the
/// library's literals, a Python traceback's first line (the record of a
/// `MemoryError` starts there), and with kernel reports on, a report's
/// first lines, which stop the fast read even when their patterns are
/// disabled (the rest is then read line by line until the report ends).
pub fn finder_literals(library: &Library, reports_on: bool) -> Vec<&[u8]> {
    let mut literals: Vec<&[u8]> = library.literals().iter().map(Vec::as_slice).collect();
    literals.push(multiline::PYTHON_TRACEBACK.as_bytes());
    if reports_on {
        literals.extend(REPORT_LITERALS.iter().map(|l| l.as_bytes()));
    }
    literals
}

/// Hosts whose reports one file's lines are assembled for at once (a
/// central syslog interleaves hosts): with a report's text (at most 256
/// KiB) each, about as much as the largest record a file holds.
const REPORT_HOSTS: usize = 4;
/// Most report line offsets remembered per file (far more than a report
/// has lines; reset when full).
const MAX_REPORT_LINE_OFFSETS: usize = 64 * 1024;
/// Paths taken from the globs per poll.
const MAX_PATHS: usize = 100_000;
/// Files no longer matching `include` whose offsets are remembered (for a
/// copy or a rename back), at least; files still matching are all
/// remembered (at most `MAX_PATHS`).
const MIN_REMEMBERED_GONE: usize = 4096;
/// Paths remembered for warn-once messages.
const MAX_WARNED: usize = 10_000;

/// `oom.log.matches`, counted by the tailer and reported by its own task.
type SharedMatchCounts = Arc<Mutex<MatchCounts>>;

/// Makes `filelog` receivers (`file_log` is the collector's older spelling).
pub struct FilelogReceiverFactory;

impl Factory for FilelogReceiverFactory {
    fn type_names(&self) -> &'static [&'static str] {
        &["filelog", "file_log"]
    }

    fn stability(&self) -> Stability {
        Stability::Beta
    }

    fn description(&self) -> &'static str {
        "tails log files (plain, CRI, docker json-file) and reports lines that announce memory exhaustion"
    }
}

impl ReceiverFactory for FilelogReceiverFactory {
    fn decode(&self, node: &Node) -> Result<Box<dyn ReceiverConfig>, ConfigError> {
        Ok(Box::new(from_node::<FilelogReceiverConfig>(node)?))
    }
}

impl ReceiverConfig for FilelogReceiverConfig {
    fn start(
        &self,
        ctx: BuildContext,
        outputs: ReceiverOutputs,
    ) -> StartFuture<'_, JoinHandle<()>> {
        Box::pin(start(self, ctx, outputs))
    }
}

/// Starts the receiver: checks storage and patterns, then tails until shutdown.
pub async fn start(
    cfg: &FilelogReceiverConfig,
    ctx: BuildContext,
    outputs: ReceiverOutputs,
) -> anyhow::Result<JoinHandle<()>> {
    let cfg = cfg.clone();
    let library = Arc::new(
        Library::new(&cfg.patterns, &cfg.disable_patterns)
            .map_err(|e| anyhow::anyhow!("receiver {}: patterns: {e}", ctx.id))?,
    );
    let kv = match &cfg.storage {
        Some(id) => Some(
            ctx.extensions
                .storage(id, &ctx.id)?
                .kv("receiver", &ctx.id)?,
        ),
        None => None,
    };
    let (checkpoints, resumed) = Checkpoints::load(kv)
        .map_err(|e| e.context(format!("receiver {}: cannot load file offsets", ctx.id)))?;
    let line_start = cfg
        .multiline
        .line_start_pattern
        .as_deref()
        .map(Regex::new)
        .transpose()
        .map_err(|e| anyhow::anyhow!("receiver {}: multiline::line_start_pattern: {e}", ctx.id))?;
    let exclude = cfg
        .exclude
        .iter()
        .map(|g| glob::Pattern::new(g))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| anyhow::anyhow!("receiver {}: exclude: {e}", ctx.id))?;
    let counts: SharedMatchCounts = Arc::default();
    let (ack_tx, ack_rx) = mpsc::channel(MAX_IN_FLIGHT + 1);
    let tracker = tokio::spawn(checkpoint::track(
        ack_rx,
        Arc::clone(&checkpoints),
        ctx.shutdown.clone(),
    ));
    let metrics_task = outputs.metrics.clone().map(|m| {
        tokio::spawn(line_records::report_matches(
            m,
            Arc::clone(&counts),
            cfg.metrics_interval.get(),
            ctx.shutdown.clone(),
        ))
    });
    tracing::info!(receiver = %ctx.id, include = ?cfg.include, resumed = resumed.is_some(), "tailing files");
    let tailer = Tailer::new(
        cfg,
        ctx.clone(),
        library,
        line_start,
        exclude,
        checkpoints,
        resumed,
        outputs.logs,
        counts,
        ack_tx,
    );
    let handle = Handle::current();
    let blocking = tokio::task::spawn_blocking(move || tailer.run(&handle));
    Ok(tokio::spawn(async move {
        if let Err(e) = blocking.await {
            tracing::error!(error = %e, "the file tailer panicked");
        }
        let _ = tracker.await;
        if let Some(t) = metrics_task {
            let _ = t.await;
        }
    }))
}

/// A file known by its fingerprint, open or not.
struct Known {
    id: u64,
    fingerprint: Vec<u8>,
    /// Where reading resumes when the file is opened again (a copy found
    /// under another name): after the last line handed on.
    offset: u64,
    reader: Option<FileReader>,
    /// Container runtime format decoding, before `assembler`.
    decoder: Decoder,
    assembler: Assembler,
    /// The kernel's OOM reports in the file (`oom_reports`).
    reports: Option<TextReports>,
    /// End offsets of lines that went into a report: their own pattern
    /// records are not sent (the report carries them).
    report_lines: HashSet<u64>,
    /// Where the line that started the report being read begins.
    report_start: Option<u64>,
    /// Where the last line given to `reports` ends.
    last_line_end: u64,
    /// Since when a report has waited without the file growing.
    report_wait_since: Option<std::time::Instant>,
    last_seen_poll: u64,
    unmatched_polls: u32,
    /// The path's metadata, as `discover` saw it in poll `stat_poll`.
    stat: Option<FileStat>,
    stat_poll: u64,
    /// The metadata at which the open file was last read to its end:
    /// while the path's metadata is the same, nothing was written, and the
    /// poll reads nothing (no fingerprint check, no read).
    quiet: Option<FileStat>,
    /// Closed to make room for another file (`max_concurrent_files`) when
    /// read to its end at this metadata: not opened again while the path's
    /// metadata is the same.
    parked: Option<FileStat>,
    /// The last poll that read lines from it: among open files, the least
    /// recently read is the first closed to make room.
    last_read_poll: u64,
}

impl Known {
    /// Open and holding nothing (no part of a line, no record being
    /// grouped): closing it loses nothing, as it is opened again at its
    /// offset.
    fn can_close(&self) -> bool {
        let Some(r) = &self.reader else { return false };
        r.is_between_lines()
            && self.offset == r.offset
            && !self.decoder.is_holding()
            && !self.assembler.is_holding()
            && !self.reports.as_ref().is_some_and(TextReports::is_pending)
    }
}

struct Tailer {
    cfg: FilelogReceiverConfig,
    ctx: BuildContext,
    library: Arc<Library>,
    line_start: Option<Regex>,
    exclude: Vec<glob::Pattern>,
    /// Directory listings kept between polls (see [`glob_cache`]).
    globs: glob_cache::GlobCache,
    checkpoints: Arc<Checkpoints>,
    /// Files of an earlier run; `Some` also means that files unknown at the
    /// first poll appeared while the agent was down.
    resumed: Option<Vec<Resumed>>,
    logs: Option<DynConsumer>,
    counts: SharedMatchCounts,
    ack_tx: mpsc::Sender<InFlight>,
    in_flight: Arc<Semaphore>,
    /// Boxed: a `Known` is about 1 KiB and most of them sit idle, so a
    /// vector of them (with its spare capacity) would cost more than the
    /// files it tracks.
    #[allow(clippy::vec_box)]
    files: Vec<Box<Known>>,
    next_id: u64,
    poll: u64,
    warned: HashSet<PathBuf>,
    records: Vec<LogRecord>,
    offsets: HashMap<u64, u64>,
    metrics: crate::telemetry::ReceiverMetrics,
    /// The pattern library's literals (and the Python traceback header),
    /// for skipping lines that cannot produce a record without splitting
    /// them; `None` when every line matters (`include_all`,
    /// `line_start_pattern`).
    finder: Option<AhoCorasick>,
    /// The fast read's buffer (one for all files).
    scan_buf: Vec<u8>,
    /// `oom_reports`, unless `disable_patterns` covers `kernel.oom_report`
    /// (`kernel.*`: kernel lines come from the `kmsg` or `oom` receiver).
    reports_on: bool,
    /// Who writes a file a runtime OOM message came from (its incident's
    /// process and cgroup).
    writers: WriterFinder,
    /// Whether this poll changed anything (opened, read, closed, sent,
    /// forgot a file, or left one for a later poll): a poll that did not is
    /// a fixed point, and the next waits for a change on disk.
    poll_did_work: bool,
    /// The directories of the files `include` matched this poll.
    matched_dirs: BTreeSet<PathBuf>,
    /// A path `include` matched this poll is a symbolic link: a write to
    /// its target shows in another directory (see [`watch`]).
    matched_link: bool,
    /// The inotify watches that end an idle wait (see [`watch`]).
    watches: watch::Watches,
    /// Longest wait while watching.
    idle_poll: Duration,
}

/// Sets `stop` and wakes the tailer (its thread park, or its eventfd)
/// when dropped: the tailer's wait ends when its watcher task finishes or
/// the runtime drops it.
struct WakeOnDrop {
    thread: std::thread::Thread,
    wake_fd: Option<Arc<std::os::fd::OwnedFd>>,
    stop: Arc<AtomicBool>,
}

impl Drop for WakeOnDrop {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(fd) = &self.wake_fd {
            watch::wake(fd);
        }
        self.thread.unpark();
    }
}

impl Tailer {
    #[allow(clippy::too_many_arguments)]
    fn new(
        cfg: FilelogReceiverConfig,
        ctx: BuildContext,
        library: Arc<Library>,
        line_start: Option<Regex>,
        exclude: Vec<glob::Pattern>,
        checkpoints: Arc<Checkpoints>,
        resumed: Option<Vec<Resumed>>,
        logs: Option<DynConsumer>,
        counts: SharedMatchCounts,
        ack_tx: mpsc::Sender<InFlight>,
    ) -> Self {
        let metrics = ctx.telemetry.receiver(&ctx.id, "file");
        let reports_on = cfg.oom_reports
            && !cfg.disable_patterns.iter().any(|d| {
                glob::Pattern::new(d).is_ok_and(|g| g.matches(report_record::OOM_REPORT_PATTERN))
            });
        let finder = if cfg.include_all || line_start.is_some() {
            None
        } else {
            match crate::patterns::literal_finder(finder_literals(&library, reports_on)) {
                Ok(f) => Some(f),
                Err(e) => {
                    // Only slower: every line is then split and matched.
                    tracing::warn!(receiver = %ctx.id, error = %e, "cannot build the line finder; reading line by line");
                    None
                }
            }
        };
        let scan_buf = if finder.is_some() {
            vec![0; SCAN_CHUNK]
        } else {
            Vec::new()
        };
        let mut t = Tailer {
            writers: WriterFinder::new(Path::new("/proc")),
            cfg,
            ctx,
            library,
            line_start,
            exclude,
            globs: glob_cache::GlobCache::default(),
            checkpoints,
            resumed: None,
            logs,
            counts,
            ack_tx,
            in_flight: Arc::new(Semaphore::new(MAX_IN_FLIGHT)),
            files: Vec::new(),
            next_id: 0,
            poll: 0,
            warned: HashSet::new(),
            records: Vec::new(),
            offsets: HashMap::new(),
            metrics,
            finder,
            scan_buf,
            reports_on,
            poll_did_work: false,
            matched_dirs: BTreeSet::new(),
            matched_link: false,
            watches: watch::Watches::default(),
            // Tests wait an hour: a change inotify missed then fails them
            // instead of passing a poll later.
            idle_poll: if cfg!(test) {
                Duration::from_secs(3600)
            } else {
                watch::IDLE_POLL
            },
        };
        if let Some(saved) = &resumed {
            for r in saved {
                t.add_known(r.fingerprint.clone(), r.offset);
            }
        }
        t.resumed = resumed;
        t
    }

    /// Adds a file; returns its index in `files`.
    fn add_known(&mut self, fingerprint: Vec<u8>, offset: u64) -> usize {
        let id = self.next_id;
        self.next_id += 1;
        self.checkpoints.register(id, fingerprint.clone(), offset);
        self.files.push(Box::new(Known {
            id,
            fingerprint,
            offset,
            reader: None,
            decoder: Decoder::new(self.cfg.format, self.max_log_size()),
            assembler: Assembler::new(self.line_start.clone(), self.max_log_size()),
            reports: self.reports_on.then(|| {
                TextReports::new(crate::clock::text_time_context(
                    crate::clock::unix_now_seconds(),
                ))
                .max_hosts(REPORT_HOSTS)
            }),
            report_lines: HashSet::new(),
            report_wait_since: None,
            report_start: None,
            last_line_end: offset,
            last_seen_poll: self.poll,
            unmatched_polls: 0,
            stat: None,
            stat_poll: 0,
            quiet: None,
            parked: None,
            last_read_poll: self.poll,
        }));
        self.files.len() - 1
    }

    fn max_log_size(&self) -> usize {
        usize::try_from(self.cfg.max_log_size.get()).unwrap_or(usize::MAX)
    }

    fn run(mut self, handle: &Handle) {
        let shutdown = self.ctx.shutdown.clone();
        let interval = self.cfg.poll_interval.get();
        // Between polls this thread sleeps on its own (an eventfd, with the
        // inotify watches while idle; else its thread park), woken by the
        // kernel once a poll: a wait through tokio's timer from this
        // (blocking) thread also wakes a runtime worker to fire the timer
        // and hand the wake-up over, several wake-ups a poll while idle.
        // A task wakes it at shutdown, or when the runtime drops the task
        // (the runtime is going: nothing could be sent any more); an early
        // wake-up only polls early.
        let wake_fd = match watch::wake_fd() {
            Ok(fd) => Some(Arc::new(fd)),
            Err(e) => {
                tracing::debug!(receiver = %self.ctx.id, error = %e, "no eventfd; polling every poll_interval");
                None
            }
        };
        let waiter = wake_fd.clone().map(watch::Waiter::new);
        let runtime_gone = Arc::new(AtomicBool::new(false));
        let watcher = handle.spawn({
            let wake = WakeOnDrop {
                thread: std::thread::current(),
                wake_fd,
                stop: Arc::clone(&runtime_gone),
            };
            let shutdown = shutdown.clone();
            async move {
                let _wake = wake;
                shutdown.cancelled().await;
            }
        });
        while !shutdown.is_cancelled() && !runtime_gone.load(Ordering::Acquire) {
            let began = std::time::Instant::now();
            // The events so far are the poll's to see; one after this
            // point ends the next wait.
            self.watches.drain();
            if self.poll_once(handle) {
                // A file stopped at its per-poll budget: more is waiting.
                continue;
            }
            let Some(waiter) = &waiter else {
                std::thread::park_timeout(interval);
                continue;
            };
            let armed = match self.idle_watch_set() {
                Some(wanted) => self.watches.watch(wanted),
                None => {
                    self.watches.unwatch();
                    watch::Armed::No
                }
            };
            if armed == watch::Armed::Already {
                // Watched since before this poll began: whatever changed
                // after it looked is an event.
                waiter.wait(self.idle_wait(), Some(&self.watches), began + interval);
            } else {
                waiter.wait(interval, None, began);
            }
        }
        watcher.abort();
        // Records held for multiline grouping are not sent: their offsets
        // were not committed, so a restart with storage reads them again.
    }

    /// Longest wait while watching: a file matched may change unseen (a
    /// write through a shared mapping makes no event), a glob that matched
    /// nothing only by a mount. Files known once stay known for a while
    /// (parked or forgotten later), so this is the short wait after any
    /// file matched.
    fn idle_wait(&self) -> Duration {
        if self.files.is_empty() {
            self.idle_poll.max(watch::IDLE_POLL_NOTHING_MATCHED)
        } else {
            self.idle_poll
        }
    }

    /// The directories to watch (see [`watch`]) when this poll left a
    /// fixed point that inotify can watch exactly; `None` to poll on.
    fn idle_watch_set(&self) -> Option<BTreeMap<PathBuf, watch::WatchFlags>> {
        if !self.cfg.inotify
            || self.poll_did_work
            || self.matched_link
            || !self.globs.settled()
            || !self
                .cfg
                .include
                .iter()
                .all(|p| glob_cache::GlobCache::handles(p))
        {
            return None;
        }
        // Nothing held that a later poll flushes on time, nothing waiting
        // for more polls to be closed.
        let waits_on_time = self.files.iter().any(|k| {
            k.reader.as_ref().is_some_and(|r| {
                !k.can_close()
                    || r.is_deleted()
                    || k.last_seen_poll != self.poll
                    || k.stat.is_none()
                    || k.stat != k.quiet
            })
        });
        if waits_on_time {
            return None;
        }
        let mut wanted = BTreeMap::new();
        for dir in self
            .globs
            .listed()?
            .chain(self.matched_dirs.iter().map(PathBuf::as_path))
        {
            wanted.insert(dir.to_path_buf(), watch::contents());
            if wanted.len() > watch::watch_budget() {
                return None;
            }
        }
        for path in self.globs.missing()? {
            let ancestor = watch::existing_ancestor(path)?;
            let flags = wanted.entry(ancestor).or_insert_with(watch::arrivals);
            *flags |= watch::arrivals();
            if wanted.len() > watch::watch_budget() {
                return None;
            }
        }
        Some(wanted)
    }

    fn warn_once(&mut self, path: &std::path::Path, what: &str, error: &dyn std::fmt::Display) {
        if self.warned.len() >= MAX_WARNED {
            self.warned.clear();
        }
        if self.warned.insert(path.to_path_buf()) {
            tracing::warn!(receiver = %self.ctx.id, path = %path.display(), error = %error, "{what}");
        }
    }

    /// The paths `include` matches and `exclude` does not, sorted and
    /// without duplicates.
    fn expand(&mut self) -> Vec<PathBuf> {
        let mut paths = Vec::new();
        let mut errors = Vec::new();
        let exclude = &self.exclude;
        self.globs.expand(
            &self.cfg.include,
            |p| !exclude.iter().any(|x| x.matches_path(p)),
            MAX_PATHS,
            &mut paths,
            &mut errors,
        );
        for e in errors {
            self.warn_once(&e.path, "cannot list", &e.error);
        }
        if paths.len() >= MAX_PATHS {
            tracing::warn!(receiver = %self.ctx.id, "include matches more than {MAX_PATHS} paths; the rest are ignored");
        }
        for pattern in self.cfg.include.clone() {
            if paths.len() >= MAX_PATHS {
                break;
            }
            if glob_cache::GlobCache::handles(&pattern) {
                continue;
            }
            let entries = match glob::glob(&pattern) {
                Ok(e) => e,
                Err(e) => {
                    self.warn_once(std::path::Path::new(&pattern), "invalid include glob", &e);
                    continue;
                }
            };
            for entry in entries {
                match entry {
                    Ok(p) => {
                        if !self.exclude.iter().any(|x| x.matches_path(&p)) {
                            paths.push(p);
                        }
                    }
                    Err(e) => {
                        let path = e.path().to_path_buf();
                        self.warn_once(&path, "cannot list", &e);
                    }
                }
                if paths.len() >= MAX_PATHS {
                    tracing::warn!(receiver = %self.ctx.id, "include matches more than {MAX_PATHS} paths; the rest are ignored");
                    break;
                }
            }
            if paths.len() >= MAX_PATHS {
                break;
            }
        }
        // By their bytes: a BTreeSet of paths compares them component by
        // component, which was the largest cost of a poll over 1,000 files.
        paths.sort_unstable_by(|a, b| a.as_os_str().cmp(b.as_os_str()));
        paths.dedup();
        paths
    }

    fn open_readers(&self) -> usize {
        self.files.iter().filter(|k| k.reader.is_some()).count()
    }

    /// Open files that can be closed to make room, the first to close
    /// last: files unchanged since they were read to their end before
    /// files written to since, and among those the least recently read
    /// (so that with more busy files than `max_concurrent_files` they take
    /// turns).
    fn closable_open_files(&self) -> Vec<usize> {
        let mut closable: Vec<usize> = (0..self.files.len())
            .filter(|&i| self.files[i].can_close())
            .collect();
        closable.sort_unstable_by_key(|&i| {
            let k = &self.files[i];
            let unchanged = k.quiet.is_some() && k.stat == k.quiet;
            (unchanged, std::cmp::Reverse((k.last_read_poll, k.id)))
        });
        closable
    }

    /// The known file whose fingerprint starts `fp` (longest first).
    fn find_known(&self, fp: &[u8]) -> Option<usize> {
        self.files
            .iter()
            .enumerate()
            .filter(|(_, k)| !k.fingerprint.is_empty() && fp.starts_with(&k.fingerprint))
            .max_by_key(|(_, k)| k.fingerprint.len())
            .map(|(i, _)| i)
    }

    fn discover(&mut self, first_poll: bool, handle: &Handle) {
        let fp_size = usize::try_from(self.cfg.fingerprint_size.get()).unwrap_or(usize::MAX);
        // Known files by (device, inode): the open ones, and the ones closed
        // to make room (an open file wins over a parked one).
        let mut by_inode: HashMap<(u64, u64), usize> = HashMap::with_capacity(self.files.len());
        for (i, k) in self.files.iter().enumerate() {
            if let (None, Some(p)) = (&k.reader, &k.parked) {
                by_inode.insert(p.dev_ino, i);
            }
        }
        for (i, k) in self.files.iter().enumerate() {
            if let Some(r) = &k.reader {
                by_inode.insert(r.dev_ino, i);
            }
        }
        let mut open = self.open_readers();
        // Open files that may be closed to make room, found when first needed.
        let mut closable: Option<Vec<usize>> = None;
        self.matched_dirs.clear();
        self.matched_link = false;
        for path in self.expand() {
            // lstat first: the same one call for a file, a second for a link.
            let meta = match std::fs::symlink_metadata(&path) {
                Ok(m) if m.file_type().is_symlink() => {
                    self.matched_link = true;
                    std::fs::metadata(&path)
                }
                other => other,
            };
            let meta = match meta {
                Ok(m) => m,
                Err(e) => {
                    self.warn_once(&path, "cannot read file metadata", &e);
                    continue;
                }
            };
            if let Some(dir) = path.parent() {
                // Sorted paths: a directory's files come together.
                if self.matched_dirs.last().map(PathBuf::as_path) != Some(dir) {
                    self.matched_dirs.insert(dir.to_path_buf());
                }
            }
            if !meta.is_file() {
                self.warn_once(&path, "not a regular file; skipped", &"include matched it");
                continue;
            }
            let stat = FileStat::of(&meta);
            let dev_ino = stat.dev_ino;
            let poll = self.poll;
            // A parked file whose metadata changed: opened again below.
            let mut reopen = None;
            if let Some(&i) = by_inode.get(&dev_ino) {
                let k = &mut self.files[i];
                if k.reader.is_some() || k.parked == Some(stat) {
                    k.last_seen_poll = poll;
                    k.stat = Some(stat);
                    k.stat_poll = poll;
                    continue;
                }
                reopen = Some(i);
            }
            if open >= self.cfg.max_concurrent_files {
                // Make room: close an open file holding nothing, idle ones
                // first; it is opened again at its offset once written to.
                let Some(j) = closable
                    .get_or_insert_with(|| self.closable_open_files())
                    .pop()
                else {
                    // Every open file holds part of a record: this one
                    // waits for a poll that has room.
                    self.poll_did_work = true;
                    continue;
                };
                // Read to its end at that metadata (when set): opened
                // again only once the metadata changes.
                let parked = self.files[j].quiet;
                self.close(j, handle);
                self.files[j].parked = parked;
                open -= 1;
            }
            let file = match File::open(&path) {
                Ok(f) => f,
                Err(e) => {
                    self.warn_once(&path, "cannot open file", &e);
                    continue;
                }
            };
            let fp = match fingerprint(&file, fp_size) {
                Ok(fp) => fp,
                Err(e) => {
                    self.warn_once(&path, "cannot read file", &e);
                    continue;
                }
            };
            if let Some(i) = reopen {
                let k = &mut self.files[i];
                k.parked = None;
                if !k.fingerprint.is_empty() && fp.starts_with(&k.fingerprint) {
                    // The parked file, grown: on from where it was left.
                    if self.attach(i, file, &path, &fp, stat) {
                        open += 1;
                    }
                    continue;
                }
                // Other content under that inode: found by its fingerprint below.
            }
            if fp.is_empty() {
                // Nothing to identify it by yet.
                continue;
            }
            if self
                .files
                .iter()
                .any(|k| k.fingerprint.len() > fp.len() && k.fingerprint.starts_with(&fp))
            {
                // The first bytes of a known file, not all of them yet: most
                // likely a copy being written (copytruncate). Decide once it
                // is complete instead of reading it as a new file.
                continue;
            }
            let idx = match self.find_known(&fp) {
                Some(idx) if self.files[idx].reader.is_some() => {
                    // Another name for an open file (a copy): read once.
                    self.files[idx].last_seen_poll = poll;
                    continue;
                }
                Some(idx) => idx,
                None => {
                    let offset = if self.cfg.start_at == StartAt::Beginning
                        || !first_poll
                        || self.resumed.is_some()
                    {
                        0
                    } else {
                        meta.len()
                    };
                    let idx = self.add_known(fp.clone(), offset);
                    // Save the starting point even before any line.
                    self.offsets.insert(self.files[idx].id, offset);
                    idx
                }
            };
            if self.attach(idx, file, &path, &fp, stat) {
                open += 1;
            }
        }
    }

    /// Opens known file `idx` as `file` at its offset; false when it
    /// cannot be read.
    fn attach(
        &mut self,
        idx: usize,
        file: File,
        path: &std::path::Path,
        fp: &[u8],
        stat: FileStat,
    ) -> bool {
        let max = self.max_log_size();
        let poll = self.poll;
        let k = &mut self.files[idx];
        if fp.len() > k.fingerprint.len() {
            k.fingerprint = fp.to_vec();
            self.checkpoints.update_fingerprint(k.id, fp.to_vec());
        }
        let mut offset = k.offset;
        if stat.len < offset {
            tracing::warn!(path = %path.display(), offset, len = stat.len, "file is shorter than its offset; reading it from its start");
            offset = 0;
        }
        match FileReader::new(file, path.to_path_buf(), offset, max) {
            Ok(r) => {
                self.poll_did_work = true;
                k.decoder.attach(path, offset);
                k.reader = Some(r);
                k.last_seen_poll = poll;
                k.unmatched_polls = 0;
                k.stat = Some(stat);
                k.stat_poll = poll;
                k.quiet = None;
                k.parked = None;
                true
            }
            Err(e) => {
                self.warn_once(path, "cannot read file metadata", &e);
                false
            }
        }
    }

    /// One poll over all files; true when a file has more to read now.
    fn poll_once(&mut self, handle: &Handle) -> bool {
        self.poll += 1;
        self.poll_did_work = false;
        let first_poll = self.poll == 1;
        self.discover(first_poll, handle);
        let flush_period = self.cfg.force_flush_period.get();
        let mut more_waiting = false;
        for i in 0..self.files.len() {
            let Some(start_offset) = self.files[i].reader.as_ref().map(|r| r.offset) else {
                continue;
            };
            let k = &mut self.files[i];
            if k.stat_poll == self.poll && k.stat.is_some() && k.stat == k.quiet {
                // Nothing written since it was read to its end: no
                // fingerprint check, no read; only an unfinished line may
                // be due.
                let mut lines = Vec::new();
                if let Some(r) = k.reader.as_mut() {
                    r.flush_partial(flush_period, &mut lines);
                }
                self.take_lines(i, lines, handle);
            } else {
                k.quiet = None;
                self.read_file(i, start_offset, handle, &mut more_waiting);
            }
            if self.files[i]
                .reader
                .as_ref()
                .is_some_and(|r| r.offset != start_offset)
            {
                self.files[i].last_read_poll = self.poll;
                self.poll_did_work = true;
            }
            self.finish_stalled_report(i, start_offset);
            let mut lines = Vec::new();
            self.files[i].decoder.flush_due(flush_period, &mut lines);
            self.assemble(i, lines, handle);
            let mut out = Vec::new();
            self.files[i].assembler.flush_due(flush_period, &mut out);
            self.take_assembled(i, out, handle);
        }
        // Close files that left `include` (renamed away, deleted) once read.
        for i in 0..self.files.len() {
            let k = &mut self.files[i];
            let Some(r) = &k.reader else { continue };
            if k.last_seen_poll == self.poll {
                k.unmatched_polls = 0;
                continue;
            }
            k.unmatched_polls += 1;
            if r.is_deleted() || k.unmatched_polls >= CLOSE_AFTER_UNMATCHED_POLLS {
                self.close(i, handle);
            }
        }
        self.evict();
        self.send(handle);
        more_waiting
    }

    /// Reads open file `i` (from `start_offset` at this poll's start) to its
    /// end or its per-poll budget; sets `more_waiting` at the budget.
    fn read_file(&mut self, i: usize, start_offset: u64, handle: &Handle, more_waiting: &mut bool) {
        let flush_period = self.cfg.force_flush_period.get();
        let fp_size = usize::try_from(self.cfg.fingerprint_size.get()).unwrap_or(usize::MAX);
        {
            loop {
                let mut lines = Vec::new();
                let mut skipped_to = None;
                let k = &mut self.files[i];
                let Some(r) = k.reader.as_mut() else { break };
                // The same content still? (A truncated file rewritten past
                // our offset before this poll is not shorter, but its first
                // bytes differ.)
                let same = fingerprint(&r.file, k.fingerprint.len().min(fp_size))
                    .map(|fp| fp == k.fingerprint)
                    .unwrap_or(false);
                let holding = k.assembler.is_holding()
                    || k.reports.as_ref().is_some_and(TextReports::is_pending);
                let outcome = match &self.finder {
                    _ if !same => Ok(ReadOutcome::Truncated),
                    Some(finder) if k.decoder.is_plain() && !holding => r
                        .read_filtered(READ_STEP, &mut self.scan_buf, finder, &mut lines)
                        .map(|(outcome, to)| {
                            skipped_to = Some(to);
                            outcome
                        }),
                    // Nothing to switch back to the fast read for.
                    None if k.decoder.is_decided() => r.read(READ_STEP, usize::MAX, &mut lines),
                    Some(_) if k.decoder.is_decided() && !holding => {
                        r.read(READ_STEP, usize::MAX, &mut lines)
                    }
                    _ => r.read(READ_STEP, LINE_BY_LINE_STEP, &mut lines),
                };
                let read = r.offset.saturating_sub(start_offset);
                if let Some(to) = skipped_to {
                    // Lines skipped unread: consumed, and nothing is held.
                    k.offset = k.offset.max(to);
                    let e = self.offsets.entry(k.id).or_insert(0);
                    *e = (*e).max(to);
                }
                match outcome {
                    Ok(ReadOutcome::Budget | ReadOutcome::Hit) => {
                        self.take_lines(i, lines, handle);
                        if read >= MAX_READ_PER_FILE_POLL as u64 {
                            *more_waiting = true;
                            break;
                        }
                    }
                    Ok(ReadOutcome::Eof) => {
                        let poll = self.poll;
                        let k = &mut self.files[i];
                        if let Some(r) = k.reader.as_mut() {
                            r.flush_partial(flush_period, &mut lines);
                            // Read to the end this poll's metadata gave:
                            // the next polls skip it while that holds.
                            if k.stat_poll == poll
                                && k.stat
                                    .is_some_and(|s| s.len == r.offset && s.dev_ino == r.dev_ino)
                            {
                                k.quiet = k.stat;
                            }
                        }
                        self.take_lines(i, lines, handle);
                        break;
                    }
                    Ok(ReadOutcome::Truncated) => {
                        self.take_lines(i, lines, handle);
                        let path = self.files[i].reader.as_ref().map(|r| r.path.clone());
                        tracing::info!(receiver = %self.ctx.id, path = ?path, "file was truncated; its new content is read from its start");
                        self.close(i, handle);
                        break;
                    }
                    Err(e) => {
                        self.take_lines(i, lines, handle);
                        if let Some(path) = self.files[i].reader.as_ref().map(|r| r.path.clone()) {
                            self.warn_once(&path, "cannot read file", &e);
                        }
                        self.close(i, handle);
                        break;
                    }
                }
            }
        }
    }

    /// Closes file `i`'s handle after handing on what it holds.
    fn close(&mut self, i: usize, handle: &Handle) {
        self.poll_did_work = true;
        let mut lines = Vec::new();
        if let Some(r) = self.files[i].reader.as_mut() {
            r.flush_partial(Duration::ZERO, &mut lines);
        }
        self.take_lines(i, lines, handle);
        let mut lines = Vec::new();
        self.files[i].decoder.flush_due(Duration::ZERO, &mut lines);
        self.assemble(i, lines, handle);
        let mut out = Vec::new();
        self.files[i].assembler.flush(&mut out);
        self.take_assembled(i, out, handle);
        if let Some(reports) = &mut self.files[i].reports {
            // A report the file ended inside of is sent with what it has.
            let mut events = Vec::new();
            reports.finish(&mut events);
            self.take_report_events(i, &mut events);
        }
        self.files[i].reader = None;
    }

    /// Forgets closed files that no longer match `include` beyond the
    /// bound, least recently seen first. Files still matching are all
    /// remembered (`MAX_PATHS` bounds them): forgetting one would read it
    /// again from its start.
    fn evict(&mut self) {
        let cap = self
            .cfg
            .max_concurrent_files
            .saturating_mul(4)
            .max(MIN_REMEMBERED_GONE);
        let poll = self.poll;
        let mut gone: Vec<(u64, u64)> = self
            .files
            .iter()
            .filter(|k| k.reader.is_none() && k.last_seen_poll != poll)
            .map(|k| (k.last_seen_poll, k.id))
            .collect();
        if gone.len() <= cap {
            return;
        }
        gone.sort_unstable();
        let excess = gone.len() - cap;
        self.poll_did_work = true;
        let gone: HashSet<u64> = gone.iter().take(excess).map(|(_, id)| *id).collect();
        for id in &gone {
            self.checkpoints.forget(*id);
        }
        self.files.retain(|k| !gone.contains(&k.id));
    }

    /// Raw lines of file `i`: decoded, then grouped into records.
    fn take_lines(&mut self, i: usize, lines: Vec<reader::Line>, handle: &Handle) {
        if lines.is_empty() {
            return;
        }
        let mut decoded = Vec::with_capacity(lines.len());
        for line in lines {
            self.files[i].decoder.push(line, &mut decoded);
        }
        self.assemble(i, decoded, handle);
    }

    /// Decoded lines of file `i`: grouped into records.
    fn assemble(&mut self, i: usize, lines: Vec<reader::Line>, handle: &Handle) {
        if lines.is_empty() {
            return;
        }
        let mut out = Vec::new();
        let mut events = Vec::new();
        for line in lines {
            let k = &mut self.files[i];
            if let Some(reports) = &mut k.reports {
                let was_pending = reports.is_pending();
                let in_report = reports.push_line(&line.text, &mut events);
                if !reports.is_pending() {
                    k.report_start = None;
                } else if !was_pending {
                    // This line starts a report.
                    k.report_start = Some(k.last_line_end);
                }
                k.last_line_end = line.end_offset;
                if in_report {
                    if k.report_lines.len() >= MAX_REPORT_LINE_OFFSETS {
                        k.report_lines.clear();
                    }
                    k.report_lines.insert(line.end_offset);
                }
                if !events.is_empty() {
                    // Records of the lines before the report go first.
                    self.take_assembled(i, std::mem::take(&mut out), handle);
                    self.take_report_events(i, &mut events);
                }
            }
            self.files[i].assembler.push(&self.library, line, &mut out);
            if out.len() >= MAX_BATCH_RECORDS {
                self.take_assembled(i, std::mem::take(&mut out), handle);
            }
        }
        self.take_assembled(i, out, handle);
    }

    /// A report of file `i` that waits for its "Killed process" line while
    /// nothing is written for `oom_report_wait` is sent with what it has: the
    /// kernel writes a report at once, so the rest is not coming (a file
    /// holding part of a report).
    fn finish_stalled_report(&mut self, i: usize, start_offset: u64) {
        let k = &mut self.files[i];
        let Some(reports) = &mut k.reports else {
            return;
        };
        let grew = k.reader.as_ref().is_some_and(|r| r.offset != start_offset);
        if !reports.is_pending() || grew {
            k.report_wait_since = None;
            return;
        }
        let since = *k
            .report_wait_since
            .get_or_insert_with(std::time::Instant::now);
        if since.elapsed() >= self.cfg.oom_report_wait.get() {
            k.report_wait_since = None;
            k.report_start = None;
            let mut events = Vec::new();
            reports.finish(&mut events);
            self.take_report_events(i, &mut events);
        }
    }

    /// Kernel OOM reports of file `i` as records.
    fn take_report_events(&mut self, i: usize, events: &mut Vec<TextEvent>) {
        for event in events.drain(..) {
            let TextEvent::Report(text) = event else {
                continue;
            };
            let k = &self.files[i];
            let mut extra = k.decoder.identity().to_vec();
            if let Some(path) = k.reader.as_ref().map(|r| r.path.as_path()) {
                extra.extend(line_records::file_attributes(&self.cfg, path));
            }
            if let Some(host) = &text.host {
                extra.push(kv_str("hostname", host));
            }
            self.counts.lock().unwrap_or_else(|p| p.into_inner()).count(
                report_record::OOM_REPORT_PATTERN,
                report_record::KERNEL_RUNTIME,
            );
            self.records.push(report_record::report_log(
                &text.report,
                text.body,
                text.time_unix_nano.unwrap_or(0),
                extra,
            ));
        }
    }

    fn take_assembled(&mut self, i: usize, out: Vec<Assembled>, handle: &Handle) {
        for a in out {
            let k = &mut self.files[i];
            k.offset = k.offset.max(a.end_offset);
            let id = k.id;
            // Not past the start of a report still being read: a restart
            // reads it again whole.
            let end = a.end_offset.min(k.report_start.unwrap_or(u64::MAX));
            // A report's line: sent (and counted) within the report's record.
            let in_report = k.report_lines.remove(&a.end_offset)
                && a.matched
                    .as_ref()
                    .is_some_and(|m| m.runtime == KERNEL_RUNTIME);
            if let Some(m) = a.matched.as_ref().filter(|_| !in_report) {
                self.counts
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .count(&m.pattern, &m.runtime);
            }
            if in_report && !self.cfg.include_all {
                let e = self.offsets.entry(id).or_insert(0);
                *e = (*e).max(end);
                continue;
            }
            if self.cfg.include_all || a.matched.is_some() {
                let path = k.reader.as_ref().map(|r| r.path.as_path());
                let mut record =
                    line_records::log_record(&self.cfg, path, k.decoder.identity(), a.clone());
                let runtime_oom = a
                    .matched
                    .as_ref()
                    .is_some_and(|m| incidents::runtime::about_its_writer(&m.runtime));
                if runtime_oom && self.ctx.extensions.incidents.enabled() {
                    let path = path.map(Path::to_path_buf);
                    let container = incidents::runtime::container_identity(k.decoder.identity());
                    self.join_incident(&mut record, path.as_deref(), container);
                }
                self.records.push(record);
            }
            let e = self.offsets.entry(id).or_insert(0);
            *e = (*e).max(end);
            if self.records.len() >= MAX_BATCH_RECORDS {
                self.send(handle);
            }
        }
    }

    /// Gives a runtime OOM record its incident: by its container (a
    /// container's log), else by the processes writing its file.
    fn join_incident(&mut self, record: &mut LogRecord, path: Option<&Path>, container: Identity) {
        // A container's log is written by its runtime, not by the process.
        let writers = match path {
            Some(path) if container.is_empty() => self.writers.writers(path),
            _ => Vec::new(),
        };
        let (identity, pid) = incidents::runtime::writers_identity(&writers, container);
        let source = path.map_or_else(String::new, |p| p.to_string_lossy().into_owned());
        incidents::runtime::register(
            &self.ctx.extensions.incidents,
            record,
            identity,
            &source,
            pid,
        );
    }

    /// `attributes` on every record and `resource` on their resource; a
    /// key the record already has (from the file or a pattern) keeps its
    /// value, as the configured ones are static defaults.
    fn with_static_attributes(&self, mut logs: ResourceLogs) -> ResourceLogs {
        if !self.cfg.resource.is_empty() {
            logs.resource = Some(Resource {
                attributes: config::static_attributes(&self.cfg.resource),
                ..Default::default()
            });
        }
        if !self.cfg.attributes.is_empty() {
            let extra = config::static_attributes(&self.cfg.attributes);
            for record in logs
                .scope_logs
                .iter_mut()
                .flat_map(|s| s.log_records.iter_mut())
            {
                for kv in &extra {
                    if !record.attributes.iter().any(|a| a.key == kv.key) {
                        record.attributes.push(kv.clone());
                    }
                }
            }
        }
        logs
    }

    /// Sends the records gathered so far and registers their offsets.
    fn send(&mut self, handle: &Handle) {
        let records = std::mem::take(&mut self.records);
        let offsets: Vec<(u64, u64)> = self.offsets.drain().collect();
        if records.is_empty() && offsets.is_empty() {
            return;
        }
        self.poll_did_work = true;
        let Some(logs) = self.logs.clone().filter(|_| !records.is_empty()) else {
            let _ = self.ack_tx.blocking_send(InFlight {
                offsets,
                status: None,
                permit: None,
            });
            return;
        };
        let shutdown = self.ctx.shutdown.clone();
        let sem = Arc::clone(&self.in_flight);
        let payload =
            Arc::new(Payload::Logs(vec![self.with_static_attributes(
                scoped_logs(line_records::SCOPE_NAME, records),
            )]));
        let items = payload.item_count();
        let metrics = &self.metrics;
        let sent = handle.block_on(async {
            let permit = tokio::select! {
                p = sem.acquire_owned() => p.ok()?,
                () = shutdown.cancelled() => return None,
            };
            match consume_retrying(logs.as_ref(), &payload, false, true, &shutdown).await {
                Ok(status) => {
                    metrics.accepted(Signal::Logs, items);
                    status.map(|s| (s, permit))
                }
                Err(e) => {
                    if !matches!(e, ConsumeError::Refused { .. }) {
                        tracing::error!(error = %e, "pipeline rejected file log records; they are read again after a restart");
                    }
                    metrics.not_accepted(Signal::Logs, items, &e);
                    None
                }
            }
        });
        let in_flight = match sent {
            Some((status, permit)) => InFlight {
                offsets,
                status: Some(status),
                permit: Some(permit),
            },
            // Not taken: these offsets must not advance.
            None => {
                let (finalizer, status) = BatchNotifier::new_pair();
                drop(finalizer);
                InFlight {
                    offsets,
                    status: Some(status),
                    permit: None,
                }
            }
        };
        let _ = self.ack_tx.blocking_send(in_flight);
    }
}

#[cfg(test)]
mod tests;
