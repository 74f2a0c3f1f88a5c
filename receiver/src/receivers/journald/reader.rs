//! The reading thread of the `journald` receiver (see the module's docs)
//! and its factory: built with the `journald` feature, which links
//! libsystemd.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::journal::{Journal, WaitResult};
use aho_corasick::AhoCorasick;
use opentelemetry_proto::tonic::common::v1::KeyValue;
use tokio::runtime::Handle;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::checkpoint::{self, Checkpoint, CursorTracker, Resume};
use super::config::{JournaldReceiverConfig, StartAt};
use super::group::{Groups, Output, Start};
use super::journal::{
    self, field, field_int, field_opt, field_string, lossy_bounded, Location, OpenError,
    StartPosition,
};
use super::metrics::Counters;
use super::records::{self, EntryFacts};
use super::{files, sigbus, skips_kernel_entries};
use crate::component::{
    BuildContext, Factory, ReceiverConfig, ReceiverFactory, Stability, StartFuture,
};
use crate::config::{from_node, ComponentId, ConfigError, Node};
use crate::kernel_log::report_record::{self, KERNEL_RUNTIME, OOM_REPORT_PATTERN};
use crate::kernel_log::text_reports::{TextEvent, TextReports};
use crate::patterns::Library;
use crate::pipeline::{
    consume_retrying, Batch, ConsumeError, DeliveryStatus, DynConsumer, Payload, Signal,
};
use crate::receivers::ReceiverOutputs;
use crate::telemetry::ReceiverMetrics;

/// Makes `journald` receivers.
pub struct JournaldReceiverFactory;

impl Factory for JournaldReceiverFactory {
    fn type_names(&self) -> &'static [&'static str] {
        &["journald"]
    }

    fn stability(&self) -> Stability {
        Stability::Alpha
    }

    fn description(&self) -> &'static str {
        "reads the systemd journal (libsystemd) and reports entries that announce memory exhaustion, stack traces grouped"
    }
}

impl ReceiverFactory for JournaldReceiverFactory {
    fn decode(&self, node: &Node) -> Result<Box<dyn ReceiverConfig>, ConfigError> {
        Ok(Box::new(from_node::<JournaldReceiverConfig>(node)?))
    }
}

impl ReceiverConfig for JournaldReceiverConfig {
    fn start(
        &self,
        ctx: BuildContext,
        outputs: ReceiverOutputs,
    ) -> StartFuture<'_, JoinHandle<()>> {
        Box::pin(start(self, ctx, outputs, Vec::new()))
    }

    fn start_in_agent(
        &self,
        ctx: BuildContext,
        outputs: ReceiverOutputs,
        receiver_types: &[String],
    ) -> StartFuture<'_, JoinHandle<()>> {
        Box::pin(start(self, ctx, outputs, receiver_types.to_vec()))
    }
}

/// Entries read between looks at the clock, the batch and shutdown.
const READ_STEP: usize = 4096;
/// Longest idle wait for the journal to change (the batch deadline and
/// open groups shorten it). New entries end the wait at once (inotify);
/// this bounds how late a journal directory that appears, or a change on
/// a file system without inotify (sd-journal's own recheck for those is
/// 2 s too), is noticed.
const MAX_IDLE_WAIT: Duration = Duration::from_secs(2);
/// The same when inotify sees every change: the journal's directories are
/// on local file systems and each missing one's arrival is watched
/// ([`journal::Arrivals`]). Then the wait is only a backstop, and an idle
/// reader wakes every 10 s (to look at the files' headers, see
/// [`FILE_CHECK_INTERVAL`]) instead of every 2 s, at the points of the
/// shared grid (5 to 15 s after the wait began).
const WATCHED_IDLE_WAIT: Duration = Duration::from_secs(10);
/// After a read error, how long before the journal is opened again.
const REOPEN_BACKOFF: Duration = Duration::from_secs(1);
/// Without libsystemd, how long the reader sleeps between looks (its load
/// failed for good; the wait only bounds the sleep, and shutdown ends it).
const UNAVAILABLE_WAIT: Duration = Duration::from_secs(3600);
/// How often the journal files' headers are looked at while reading (and
/// after the journal reports a change in its files).
const FILE_CHECK_INTERVAL: Duration = Duration::from_secs(10);
/// At shutdown, how long the last batch waits for room among the
/// unacknowledged ones before it is left for the next start to read again.
const SHUTDOWN_SEND_WAIT: Duration = Duration::from_secs(5);
/// How long a kernel OOM report waits for its "Killed process" entry
/// while no kernel entry comes (as `filelog`'s `oom_report_wait` default):
/// the kernel writes a report at once, so then the rest is not coming.
const REPORT_WAIT: Duration = Duration::from_secs(5);
/// Report entry positions remembered at most (far more than a report has
/// entries; reset when full).
const MAX_REPORT_POSITIONS: usize = 64 * 1024;

/// Checks the config, loads the checkpoint and spawns the reading thread.
/// A journal that does not exist yet is not an error: it is looked for
/// every `poll_interval`.
pub async fn start(
    cfg: &JournaldReceiverConfig,
    ctx: BuildContext,
    outputs: ReceiverOutputs,
    receiver_types: Vec<String>,
) -> anyhow::Result<JoinHandle<()>> {
    let cfg = cfg.clone();
    let id = ctx.id.clone();
    let library = cfg
        .library()
        .map_err(|e| anyhow::anyhow!("receiver {id}: patterns: {e}"))?;
    let kv = match &cfg.storage {
        Some(storage_id) => Some(
            ctx.extensions
                .storage(storage_id, &id)?
                .kv("receiver", &id)?,
        ),
        None => None,
    };
    let resume = match &kv {
        Some(kv) => {
            let kv = kv.clone();
            tokio::task::spawn_blocking(move || checkpoint::load(&kv))
                .await
                .map_err(|e| anyhow::anyhow!("loading the journald checkpoint: {e}"))?
                .map_err(|e| e.context(format!("receiver {id}: cannot read the checkpoint")))?
        }
        None => None,
    };
    if !sigbus::install() {
        tracing::warn!(receiver = %id, "cannot install the SIGBUS guard: a journal file truncated while it is read would end the agent");
    }
    let skip_kernel = skips_kernel_entries(cfg.kernel_transport, &receiver_types);
    let (tracker, updates) = CursorTracker::new();
    if let Some(kv) = kv.clone() {
        // Detached: acknowledgements come while the pipelines drain, after
        // the receiver stopped; it ends with the last tracker handle.
        drop(checkpoint::spawn_writer(kv, tracker.book(), updates));
    }
    let counters = Arc::new(Mutex::new(Counters::default()));
    let metrics_task = outputs.metrics.clone().map(|to| {
        tokio::spawn(report_counters(
            to,
            Arc::clone(&counters),
            cfg.metrics_interval.get(),
            ctx.shutdown.clone(),
            ctx.telemetry.receiver(&id, "journald"),
        ))
    });
    let location = Location::of(&cfg);
    tracing::info!(
        receiver = %id,
        location = ?location,
        resume = resume.is_some(),
        kernel_entries = if skip_kernel { "skipped" } else { "read" },
        "reading the systemd journal"
    );
    let mut reader = Reader::new(
        cfg,
        id,
        library,
        location,
        skip_kernel,
        resume,
        kv.is_some(),
        tracker,
        outputs.logs,
        counters,
        ctx.telemetry.receiver(&ctx.id, "journald"),
        ctx.shutdown.clone(),
    );
    reader.incidents = Some(Arc::clone(&ctx.extensions.incidents));
    let handle = Handle::current();
    let blocking = tokio::task::spawn_blocking(move || reader.run(&handle));
    Ok(tokio::spawn(async move {
        if let Err(e) = blocking.await {
            tracing::error!(error = %e, "the journald reader panicked");
        }
        if let Some(task) = metrics_task {
            let _ = task.await;
        }
    }))
}

/// Reports the counters every `interval` until shutdown (and once more then).
async fn report_counters(
    to: DynConsumer,
    counters: Arc<Mutex<Counters>>,
    interval: Duration,
    shutdown: CancellationToken,
    telemetry: ReceiverMetrics,
) {
    let start = crate::clock::unix_now_nanos();
    // On the shared grid: reported with the other periodic data.
    let mut tick = crate::clock::grid_interval(interval);
    loop {
        let stop = tokio::select! {
            () = shutdown.cancelled() => true,
            _ = tick.tick() => false,
        };
        let snapshot = counters
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .metrics(start);
        let payload = Payload::Metrics(vec![snapshot]);
        let items = payload.item_count();
        match to.consume(Batch::new(payload)).await {
            Ok(()) => telemetry.accepted(Signal::Metrics, items),
            Err(e) => {
                // Cumulative: the next report carries the counts.
                tracing::debug!(error = %e, "the pipeline did not take the journald counters");
                telemetry.not_accepted(Signal::Metrics, items, &e);
            }
        }
        if stop {
            return;
        }
    }
}

/// What reading a stretch of entries ended with.
enum Step {
    /// No entry left for now.
    CaughtUp,
    /// More may be waiting.
    More,
}

/// The journal as open, and what is known of its directories.
struct Open {
    /// The journal's inotify fd in the runtime's reactor, once it was first
    /// waited on. Declared before `journal`: dropped before the journal
    /// closes the fd.
    watch: Option<journal::Watch>,
    journal: Journal,
    /// Directories of the location that did not exist when it was opened:
    /// one appearing later makes the journal be opened again.
    missing_dirs: Vec<PathBuf>,
    /// The arrival of `missing_dirs` (see [`journal::Arrivals`]).
    arrivals: ArrivalWatch,
    /// Whether the directories that exist are all on local file systems,
    /// where inotify reports every change.
    dirs_local: bool,
    /// `files`: the files opened (the globs are expanded again each poll).
    files: Vec<PathBuf>,
    /// SIGBUS repairs counted when it was opened.
    faults_at_open: u64,
}

/// Where the watch on the missing directories' arrival stands.
enum ArrivalWatch {
    /// To be set up at the next idle wait (at first, and after it reported).
    Untried,
    Watching(journal::Arrivals),
    /// Cannot be watched exactly: the idle wait stays short.
    Unavailable,
}

struct Reader {
    cfg: JournaldReceiverConfig,
    id: ComponentId,
    library: Library,
    /// The library's literals and the Python traceback header, for
    /// passing over messages that cannot match without splitting them;
    /// `None` when every entry matters (`include_all`).
    finder: Option<AhoCorasick>,
    location: Location,
    skip_kernel: bool,
    /// The kernel's OOM reports in kernel-transport entries, assembled into
    /// one record per kill (`None`: kernel entries skipped, or
    /// `disable_patterns` covers `kernel.oom_report`).
    reports: Option<TextReports>,
    /// The first entry of the report being assembled: the checkpoint stays
    /// before it, so a restart reads the report whole.
    report_start: Option<Arc<Start>>,
    /// When the last kernel entry went into the report being assembled.
    report_fed: Option<Instant>,
    /// With `include_all`: positions of entries that are part of a report,
    /// whose own records are sent but not counted again (the report is).
    report_positions: HashSet<u64>,
    max_log_size: usize,
    /// Where reading starts while no entry was read (a stored checkpoint,
    /// else `start_at`).
    initial_start: StartPosition,
    /// Whether checkpoints are stored (the tail's cursor is then the first).
    storing: bool,
    groups: Groups,
    batch: records::Batch,
    /// When the batch being collected is sent.
    deadline: Option<Instant>,
    /// Position of the last entry read (entries are numbered from 1 in
    /// this run; 0: none).
    pos: u64,
    /// The journal is on an entry not processed yet.
    on_unread_entry: bool,
    /// The cursor of the entry at `pos`, once asked for.
    cursor_at_pos: Option<(u64, String)>,
    /// The last position handed to the tracker.
    flushed_through: Option<u64>,
    /// A batch could not be handed on at shutdown: no later position may
    /// be checkpointed.
    stalled: bool,
    tracker: CursorTracker,
    in_flight: Arc<Semaphore>,
    logs: Option<DynConsumer>,
    counters: Arc<Mutex<Counters>>,
    telemetry: ReceiverMetrics,
    shutdown: CancellationToken,
    /// Where runtime OOM messages find their incident.
    incidents: Option<Arc<crate::incidents::IncidentHub>>,
    /// Headers of the journal files, checked once per change.
    file_checks: files::FileChecks,
    last_file_check: Option<Instant>,
    /// The location was missing (warned once until it appears).
    missing_warned: bool,
    /// That libsystemd cannot be loaded was logged.
    unavailable_said: bool,
    /// The location was missing at some point: what appears later is all new.
    was_missing: bool,
    /// A warning about unreadable entries was given (once per open).
    entry_error_warned: bool,
    /// A warning that the journal cannot be watched was given.
    wait_warned: bool,
}

impl Reader {
    #[allow(clippy::too_many_arguments)]
    fn new(
        cfg: JournaldReceiverConfig,
        id: ComponentId,
        library: Library,
        location: Location,
        skip_kernel: bool,
        resume: Option<Checkpoint>,
        storing: bool,
        tracker: CursorTracker,
        logs: Option<DynConsumer>,
        counters: Arc<Mutex<Counters>>,
        telemetry: ReceiverMetrics,
        shutdown: CancellationToken,
    ) -> Reader {
        let reports_on = !skip_kernel
            && !cfg
                .disable_patterns
                .iter()
                .any(|d| glob::Pattern::new(d).is_ok_and(|g| g.matches(OOM_REPORT_PATTERN)));
        let finder = if cfg.include_all {
            None
        } else {
            let literals = crate::receivers::filelog::finder_literals(&library, reports_on);
            match crate::patterns::literal_finder(literals) {
                Ok(f) => Some(f),
                Err(e) => {
                    // Only slower: every message is then matched.
                    tracing::warn!(receiver = %id, error = %e, "cannot build the message finder; matching every entry");
                    None
                }
            }
        };
        let initial_start = match resume {
            Some(c) => StartPosition::Cursor(c),
            None => match cfg.start_at {
                StartAt::End => StartPosition::Tail,
                StartAt::Beginning => StartPosition::Head,
            },
        };
        let max_log_size = usize::try_from(cfg.max_log_size.get()).unwrap_or(usize::MAX);
        Reader {
            groups: Groups::new(max_log_size, cfg.include_all),
            in_flight: Arc::new(Semaphore::new(cfg.max_unacknowledged_batches)),
            cfg,
            id,
            library,
            finder,
            location,
            skip_kernel,
            reports: reports_on.then(|| {
                TextReports::new(crate::clock::text_time_context(
                    crate::clock::unix_now_seconds(),
                ))
            }),
            report_start: None,
            report_fed: None,
            report_positions: HashSet::new(),
            max_log_size,
            initial_start,
            storing,
            batch: records::Batch::default(),
            deadline: None,
            pos: 0,
            on_unread_entry: false,
            cursor_at_pos: None,
            flushed_through: None,
            stalled: false,
            tracker,
            logs,
            counters,
            telemetry,
            shutdown,
            incidents: None,
            file_checks: files::FileChecks::default(),
            last_file_check: None,
            missing_warned: false,
            unavailable_said: false,
            was_missing: false,
            entry_error_warned: false,
            wait_warned: false,
        }
    }

    fn run(mut self, handle: &Handle) {
        let mut open: Option<Open> = None;
        // The journal is opened once even when shutdown came first: with
        // `start_at: end` that stores where the journal ended, so a restart
        // reads what was written while the agent was down.
        let mut first_open = true;
        while std::mem::take(&mut first_open) || !self.shutdown.is_cancelled() {
            let Some(current) = open.as_mut() else {
                match self.open() {
                    Ok(o) => open = Some(o),
                    Err(retry) => self.idle_closed(handle, retry),
                }
                continue;
            };
            let step = self.read_some(&mut current.journal, handle);
            let faults = sigbus::faults();
            if faults != current.faults_at_open {
                tracing::warn!(
                    receiver = %self.id,
                    faults = faults - current.faults_at_open,
                    "a journal file was truncated while it was being read; opening the journal again (entries in the cut part are lost)"
                );
                self.count(|c| c.files_failed += 1);
                self.close(open.take(), handle);
                continue;
            }
            match step {
                Ok(Step::More) => self.after_step(Some(&mut current.journal), handle),
                Ok(Step::CaughtUp) => {
                    if self.idle_open(current, handle) {
                        self.close(open.take(), handle);
                    }
                }
                Err(e) => {
                    tracing::warn!(receiver = %self.id, error = %e, "reading the journal failed; opening it again");
                    self.close(open.take(), handle);
                    self.sleep(handle, REOPEN_BACKOFF);
                }
            }
        }
        // Shutdown: what is grouped is sent as it is, with the last batch.
        let mut out = Vec::new();
        self.groups.flush_all(&mut out);
        self.take_outputs(out);
        self.finish_report();
        let journal = open.as_mut().map(|o| &mut o.journal);
        self.flush(journal, handle);
    }

    /// Opens the journal and positions it. On failure, when to try again.
    fn open(&mut self) -> Result<Open, Retry> {
        let threshold = self.max_log_size.max(1);
        let (mut journal, opened_files) = match journal::open(&self.location, threshold) {
            Ok(opened) => opened,
            Err(OpenError::Missing(what)) => {
                if !self.missing_warned {
                    tracing::warn!(receiver = %self.id, "no journal to read yet: {what}; looking again every {:?}", self.cfg.poll_interval.get());
                    self.missing_warned = true;
                }
                self.was_missing = true;
                return Err(Retry::After(self.cfg.poll_interval.get()));
            }
            Err(OpenError::NoJournalYet(what)) => {
                // No journald here (yet): libsystemd stays unloaded until a
                // journal file appears (`idle_closed`). A journal that
                // appears is read from its start (`was_missing`).
                if !self.missing_warned {
                    tracing::warn!(receiver = %self.id, "no journal to read yet: {what}; reading it once journald writes one");
                    self.missing_warned = true;
                }
                self.was_missing = true;
                return Err(Retry::OnceJournalFile);
            }
            Err(OpenError::Failed(what)) => {
                tracing::warn!(receiver = %self.id, "cannot open the journal: {what}; trying again");
                return Err(Retry::After(
                    REOPEN_BACKOFF.max(self.cfg.poll_interval.get()),
                ));
            }
            Err(OpenError::Unavailable(why)) => {
                // A host without libsystemd: said once; the agent's other
                // receivers go on (the default pipeline has this one).
                if !self.unavailable_said {
                    tracing::error!(receiver = %self.id, "{why}; this receiver reads no journal");
                    self.unavailable_said = true;
                }
                return Err(Retry::After(UNAVAILABLE_WAIT));
            }
        };
        let dirs = self.location.directories();
        let missing_dirs: Vec<PathBuf> = dirs.iter().filter(|d| !d.is_dir()).cloned().collect();
        let none_yet = !dirs.is_empty() && missing_dirs.len() == dirs.len();
        if none_yet {
            // No journal at all yet (the system journal opens anyway): what
            // appears later is all new.
            if !self.missing_warned {
                tracing::warn!(receiver = %self.id, dirs = ?dirs, "no journal directory exists yet; reading it once one appears");
                self.missing_warned = true;
            }
            self.was_missing = true;
        }
        let last_cursor = self.cursor_at_pos.as_ref().map(|(_, c)| c.clone());
        let start = match (last_cursor, &self.initial_start) {
            // A reopen: after the last entry read (or, when its cursor could
            // not be had, the last one whose cursor is known: the entries
            // after it are read again).
            (Some(cursor), _) => StartPosition::Cursor(Checkpoint {
                cursor,
                resume: Resume::After,
            }),
            // The journal appeared after the receiver started: all of it is new.
            (None, StartPosition::Tail) if self.was_missing => StartPosition::Head,
            (None, start) => start.clone(),
        };
        let positioned = match journal::position(&mut journal, &self.cfg, &start) {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(receiver = %self.id, "cannot position the journal: {e}; trying again");
                return Err(Retry::After(REOPEN_BACKOFF));
            }
        };
        if self.missing_warned && !none_yet {
            tracing::info!(receiver = %self.id, location = ?self.location, "the journal is there now; reading it");
            self.missing_warned = false;
        }
        self.on_unread_entry = positioned.on_unread_entry;
        self.entry_error_warned = false;
        // Where the journal stands when nothing is to be read again: a
        // reopen before the next entry resumes there.
        if let Some(cursor) = positioned.standing_cursor.clone() {
            if self.known_cursor().is_none() {
                self.cursor_at_pos = Some((self.pos, cursor));
            }
        }
        if let (Some(tail), true, None) =
            (&positioned.tail_cursor, self.storing, self.flushed_through)
        {
            // The end as it is now is the first checkpoint: a restart before
            // anything new was read resumes here, not at a later end.
            self.tracker.skip_through(
                self.pos,
                Some(Checkpoint {
                    cursor: tail.clone(),
                    resume: Resume::After,
                }),
            );
            self.flushed_through = Some(self.pos);
        }
        if let Some(gap) = positioned.gap {
            tracing::warn!(
                receiver = %self.id,
                from = %gap.from_cursor,
                to = %gap.to_cursor,
                at_most = ?gap.at_most,
                "journal entries were removed before they were read (vacuumed or rotated away)"
            );
            let lost = gap.at_most.unwrap_or(1).max(1);
            self.count(|c| c.entries_lost = c.entries_lost.saturating_add(lost));
            self.batch.push(Vec::new(), records::gap_record(&gap));
            self.deadline.get_or_insert_with(Instant::now);
        }
        let dirs_local = dirs
            .iter()
            .filter(|d| d.is_dir())
            .all(|d| crate::receivers::filelog::watch::is_local(d));
        let mut open = Open {
            watch: None,
            journal,
            missing_dirs,
            arrivals: ArrivalWatch::Untried,
            dirs_local,
            files: opened_files,
            faults_at_open: sigbus::faults(),
        };
        self.last_file_check = None;
        self.check_files(&mut open, true);
        Ok(open)
    }

    /// The cursor of the last entry read, when one was read in this run.
    fn known_cursor(&self) -> Option<String> {
        self.cursor_at_pos
            .as_ref()
            .filter(|(pos, _)| *pos == self.pos)
            .map(|(_, c)| c.clone())
    }

    /// Closes the journal after caching the last entry's cursor (the
    /// reopen resumes after it).
    fn close(&mut self, open: Option<Open>, handle: &Handle) {
        if let Some(mut open) = open {
            self.remember_cursor(&mut open.journal);
            self.after_step(None, handle);
        }
    }

    /// Notes the cursor of the entry at `pos`, when the journal is still on it.
    fn remember_cursor(&mut self, journal: &mut Journal) {
        if self.pos == 0
            || self
                .cursor_at_pos
                .as_ref()
                .is_some_and(|(p, _)| *p == self.pos)
        {
            return;
        }
        if let Ok(cursor) = journal.cursor() {
            self.cursor_at_pos = Some((self.pos, cursor));
        }
    }

    /// Reads up to [`READ_STEP`] entries.
    fn read_some(
        &mut self,
        journal: &mut Journal,
        handle: &Handle,
    ) -> Result<Step, super::journal::Error> {
        for _ in 0..READ_STEP {
            if self.on_unread_entry {
                self.on_unread_entry = false;
            } else if journal.next()? == 0 {
                // Still on the last entry read: its cursor, before a wait
                // may invalidate it.
                self.remember_cursor(journal);
                return Ok(Step::CaughtUp);
            }
            self.pos += 1;
            self.on_entry(journal);
            if self.batch.len() >= self.cfg.max_batch_records {
                self.flush(Some(&mut *journal), handle);
            }
        }
        // Where a reopen resumes should the journal fail before the next
        // cursor is asked for (a cursor per READ_STEP entries costs nothing).
        self.remember_cursor(journal);
        Ok(Step::More)
    }

    /// One entry: passed over unless its message may matter, or it may
    /// continue an open stack trace.
    fn on_entry(&mut self, journal: &mut Journal) {
        let (text, truncated) = {
            let message = match field(journal, "MESSAGE\0") {
                Ok(Some(message)) => message,
                Ok(None) => return,
                Err(e) => {
                    if !self.entry_error_warned {
                        tracing::warn!(receiver = %self.id, error = %e, "an entry of the journal cannot be read (corrupt?); passing over it (warned once per open)");
                        self.entry_error_warned = true;
                    }
                    return;
                }
            };
            let hit = self.finder.as_ref().is_none_or(|f| f.is_match(message));
            let report_pending = self.reports.as_ref().is_some_and(TextReports::is_pending);
            if !hit && self.groups.is_empty() && !report_pending {
                return;
            }
            if !hit && report_pending {
                // Every entry may continue the report: read on below.
                lossy_bounded(message, self.max_log_size)
            } else if !hit {
                // Only a continuation of an open group matters: the pid first.
                match field_int(journal, "_PID\0") {
                    Some(pid) if self.groups.holds_pid(pid) => {}
                    _ => return,
                }
                // get_data again: the borrow above ended.
                match field_opt(journal, "MESSAGE\0") {
                    Some(m) => lossy_bounded(m, self.max_log_size),
                    None => return,
                }
            } else {
                lossy_bounded(message, self.max_log_size)
            }
        };
        let kernel = field_opt(journal, "_TRANSPORT\0") == Some(b"kernel".as_slice());
        if kernel && self.skip_kernel {
            return;
        }
        // Before the priority filter: a report's lines have several levels
        // and the report is one record.
        if kernel && self.feed_report(journal, &text) {
            if !self.cfg.include_all {
                // Sent within the report's record.
                return;
            }
            if self.report_positions.len() >= MAX_REPORT_POSITIONS {
                self.report_positions.clear();
            }
            self.report_positions.insert(self.pos);
        }
        // journalctl's --priority: entries without a priority are left out
        // unless every level is wanted.
        let levels = self.cfg.priority;
        if !levels.is_all()
            && !field_int(journal, "PRIORITY\0")
                .is_some_and(|p| (i64::from(levels.min)..=i64::from(levels.max)).contains(&p))
        {
            return;
        }
        let pid = field_int(journal, "_PID\0").unwrap_or(-1);
        let unit = field_string(journal, "_SYSTEMD_UNIT\0", 1024)
            .or_else(|| field_string(journal, "SYSLOG_IDENTIFIER\0", 1024))
            .unwrap_or_default();
        let key = (unit, pid);
        let hit = self.finder.as_ref().is_none_or(|f| f.is_match(&text));
        if !hit && !self.groups.holds(&key) {
            return;
        }
        let pos = self.pos;
        let secret_keys = &self.cfg.secret_keys;
        let mut cached: Option<Arc<Start>> = None;
        let mut start = || {
            Arc::clone(cached.get_or_insert_with(|| {
                let facts = EntryFacts::read(journal);
                let resource = facts.resource_attributes(secret_keys);
                Arc::new(Start {
                    pos,
                    facts,
                    cursor: journal.cursor().ok(),
                    resource,
                })
            }))
        };
        let mut out = Vec::new();
        self.groups.push(
            &self.library,
            key,
            &text,
            truncated,
            pos,
            &mut start,
            &mut out,
        );
        self.take_outputs(out);
    }

    /// A kernel entry's lines into the report assembler. True when the
    /// entry is part of a report.
    fn feed_report(&mut self, journal: &mut Journal, text: &str) -> bool {
        let Some(reports) = self.reports.as_mut() else {
            return false;
        };
        let realtime_us = journal.timestamp_usec().ok();
        let kernel_time_us =
            field_int(journal, "_SOURCE_MONOTONIC_TIMESTAMP\0").and_then(|t| u64::try_from(t).ok());
        let was_pending = reports.is_pending();
        let mut events = Vec::new();
        let mut in_report = false;
        for line in text.split('\n') {
            in_report |= reports.push_kernel_message(
                line,
                realtime_us.map(|t| t.saturating_mul(1000)),
                kernel_time_us,
                &mut events,
            );
        }
        let pending = reports.is_pending();
        let reports_ended = events.iter().any(|e| matches!(e, TextEvent::Report(_)));
        if !in_report && events.is_empty() && !pending {
            return false;
        }
        let facts = EntryFacts::read(journal);
        let resource = facts.resource_attributes(&self.cfg.secret_keys);
        let here = Arc::new(Start {
            pos: self.pos,
            facts,
            cursor: journal.cursor().ok(),
            resource,
        });
        // The facts of the report's first entry for one without an ending
        // entry (ended by the next report, or cut off).
        let first = self.report_start.clone();
        self.take_report_events(events, &here, first.as_ref());
        if !pending {
            self.report_start = None;
            self.report_fed = None;
        } else {
            if !was_pending || reports_ended {
                self.report_start = Some(here);
            }
            self.report_fed = Some(Instant::now());
        }
        in_report
    }

    /// A report still waiting for its "Killed process" entry is sent with
    /// what it has (the journal has no more of it, or the receiver stops).
    fn finish_report(&mut self) {
        let Some(reports) = self.reports.as_mut() else {
            return;
        };
        let mut events = Vec::new();
        reports.finish(&mut events);
        self.report_fed = None;
        if let Some(first) = self.report_start.take() {
            self.take_report_events(events, &Arc::clone(&first), Some(&first));
        }
    }

    /// Report records into the batch: the journal facts of `ending` (the
    /// entry that completed it) or, for a report without one, of `first`.
    fn take_report_events(
        &mut self,
        events: Vec<TextEvent>,
        ending: &Arc<Start>,
        first: Option<&Arc<Start>>,
    ) {
        for event in events {
            let TextEvent::Report(text) = event else {
                continue;
            };
            let entry = match first {
                Some(first) if text.report.unfinished.is_some() => first,
                _ => ending,
            };
            let mut extra = Vec::new();
            entry.facts.attributes(&mut extra);
            let time = text
                .time_unix_nano
                .unwrap_or_else(|| entry.facts.realtime_usec.saturating_mul(1000));
            self.count(|c| c.matches.count(OOM_REPORT_PATTERN, KERNEL_RUNTIME));
            let record = report_record::report_log(&text.report, text.body, time, extra);
            self.batch.push(entry.resource.clone(), record);
        }
        if !self.batch.is_empty() {
            self.deadline
                .get_or_insert_with(|| Instant::now() + self.cfg.batch_wait.get());
        }
    }

    /// Records of assembled outputs into the batch.
    fn take_outputs(&mut self, out: Vec<Output>) {
        if out.is_empty() {
            return;
        }
        for o in out {
            let in_report = self.report_positions.remove(&o.assembled.first_end_offset);
            if let Some(m) = &o.assembled.matched {
                // A report's line: counted within the report's record.
                if !(in_report && m.runtime == KERNEL_RUNTIME) {
                    let (pattern, runtime) = (m.pattern.clone(), m.runtime.clone());
                    self.count(|c| c.matches.count(&pattern, &runtime));
                }
            }
            let resource: Vec<KeyValue> = o.start.resource.clone();
            let mut record = records::log_record(o.assembled, &o.start.facts);
            if let Some(hub) = self.incidents.as_deref().filter(|h| h.enabled()) {
                join_incident(hub, &mut record, &o.start.facts);
            }
            self.batch.push(resource, record);
        }
        self.deadline
            .get_or_insert_with(|| Instant::now() + self.cfg.batch_wait.get());
    }

    fn count(&self, f: impl FnOnce(&mut Counters)) {
        f(&mut self.counters.lock().unwrap_or_else(|p| p.into_inner()));
    }

    /// Between reading steps: groups that waited long enough, and the
    /// batch when its time has come.
    fn after_step(&mut self, journal: Option<&mut Journal>, handle: &Handle) {
        let mut out = Vec::new();
        self.groups
            .flush_due(self.cfg.force_flush_period.get(), &mut out);
        self.take_outputs(out);
        if self.report_fed.is_some_and(|t| t.elapsed() >= REPORT_WAIT) {
            self.finish_report();
        }
        if self.deadline.is_some_and(|d| Instant::now() >= d) {
            self.flush(journal, handle);
        }
    }

    /// Caught up: waits for the journal to change (or a deadline), then
    /// looks for what changed. True when the journal must be opened again.
    fn idle_open(&mut self, open: &mut Open, handle: &Handle) -> bool {
        self.after_step(Some(&mut open.journal), handle);
        // Nothing left to read: the checkpoint may move up to here.
        if self
            .flushed_through
            .is_none_or(|f| f < self.checkpoint_position())
            && self.batch.is_empty()
        {
            self.flush(Some(&mut open.journal), handle);
        }
        if !open.missing_dirs.is_empty() && matches!(open.arrivals, ArrivalWatch::Untried) {
            open.arrivals = match journal::Arrivals::new(&open.missing_dirs, handle) {
                Some(arrivals) => ArrivalWatch::Watching(arrivals),
                None => ArrivalWatch::Unavailable,
            };
            // One that came before the watch makes no event.
            if self.a_missing_dir_appeared(open) {
                return true;
            }
        }
        let watched_exactly = self.location.is_watched()
            && open.dirs_local
            && (open.missing_dirs.is_empty() || matches!(open.arrivals, ArrivalWatch::Watching(_)));
        let now = tokio::time::Instant::now();
        let wait = self.idle_wait(watched_exactly, now);
        let changed = if self.location.is_watched() {
            match self.wait_for_change(open, now + wait, handle) {
                Ok(WaitResult::Invalidate) => true,
                Ok(_) => false,
                Err(e) => {
                    // No inotify (its limits reached): polled instead; new
                    // files are then found only when the journal is opened
                    // again.
                    if !self.wait_warned {
                        tracing::warn!(receiver = %self.id, error = %e, "cannot watch the journal for changes; polling it every poll_interval");
                        self.wait_warned = true;
                    }
                    self.sleep(handle, wait.min(self.cfg.poll_interval.get()));
                    false
                }
            }
        } else {
            self.sleep(handle, wait.min(self.cfg.poll_interval.get()));
            false
        };
        if changed {
            // Files came or went: look at their headers soon.
            self.last_file_check = None;
        }
        self.check_files(open, false);
        // A directory that appeared, or other `files`: open again.
        if self.a_missing_dir_appeared(open) {
            return true;
        }
        if !self.location.is_watched() && self.location.expand_files() != open.files {
            return true;
        }
        false
    }

    /// Whether a directory missing at open exists now (then the journal is
    /// opened again).
    fn a_missing_dir_appeared(&self, open: &Open) -> bool {
        let appeared = open.missing_dirs.iter().any(|d| d.is_dir());
        if appeared {
            tracing::info!(receiver = %self.id, "a journal directory appeared; opening the journal again");
        }
        appeared
    }

    /// Waits for the journal to change, until `deadline` or shutdown:
    /// on its inotify fd in the runtime's reactor, so that an idle reader
    /// wakes for new entries, its deadlines and every [`MAX_IDLE_WAIT`],
    /// not every few hundred milliseconds to look at the shutdown token.
    fn wait_for_change(
        &self,
        open: &mut Open,
        deadline: tokio::time::Instant,
        handle: &Handle,
    ) -> Result<WaitResult, String> {
        match &mut open.watch {
            Some(watch) => {
                let arrivals = match &open.arrivals {
                    ArrivalWatch::Watching(arrivals) => Some(arrivals),
                    _ => None,
                };
                let (changed, arrived) = watch.wait(
                    &mut open.journal,
                    deadline,
                    &self.shutdown,
                    arrivals,
                    handle,
                );
                if arrived {
                    // Looked for below; watched anew at the next wait.
                    open.arrivals = ArrivalWatch::Untried;
                }
                changed.map_err(|e| e.to_string())
            }
            None => {
                let (watch, changed) = journal::Watch::new(&mut open.journal, handle)?;
                open.watch = Some(watch);
                Ok(changed)
            }
        }
    }

    /// The journal could not be opened: waits as `retry` says (sending
    /// what is due).
    fn idle_closed(&mut self, handle: &Handle, retry: Retry) {
        let mut out = Vec::new();
        self.groups.flush_due(Duration::ZERO, &mut out);
        self.take_outputs(out);
        if !self.batch.is_empty() {
            self.flush(None, handle);
        }
        let wait = match retry {
            Retry::After(wait) => wait,
            Retry::OnceJournalFile => {
                // Until inotify sees a file or directory made in the
                // journal's directories, or, where they cannot be watched,
                // the shared 10 s grid.
                let wait = watched_idle_wait(tokio::time::Instant::now());
                let dirs = self.location.directories();
                // Watched first, then looked at: a file made in between is
                // either seen now or makes an event.
                let arrivals = journal::Arrivals::of_journal_files(&dirs, handle);
                if journal::any_journal_file(&dirs) {
                    return;
                }
                if let Some(arrivals) = arrivals {
                    handle.block_on(async {
                        tokio::select! {
                            () = arrivals.arrived() => {}
                            () = tokio::time::sleep(wait) => {}
                            () = self.shutdown.cancelled() => {}
                        }
                    });
                    return;
                }
                wait
            }
        };
        self.sleep(handle, wait);
    }

    /// How long an idle wait may last: until the batch is due or the
    /// oldest group may be flushed, at most [`MAX_IDLE_WAIT`]
    /// ([`WATCHED_IDLE_WAIT`] when inotify sees every change).
    fn idle_wait(&self, watched_exactly: bool, now: tokio::time::Instant) -> Duration {
        let mut wait = if watched_exactly {
            watched_idle_wait(now)
        } else {
            MAX_IDLE_WAIT
        };
        if let Some(d) = self.deadline {
            wait = wait.min(d.saturating_duration_since(Instant::now()));
        }
        if !self.groups.is_empty() {
            wait = wait.min(self.cfg.force_flush_period.get());
        }
        if let Some(fed) = self.report_fed {
            wait = wait.min(REPORT_WAIT.saturating_sub(fed.elapsed()));
        }
        wait.max(Duration::from_millis(1))
    }

    /// Sleeps `d`, or until shutdown. One wait on the runtime's timer (this
    /// is a blocking-pool thread, where `block_on` is allowed): an idle
    /// reader wakes once per wait, not every few milliseconds to look at
    /// the shutdown token.
    fn sleep(&self, handle: &Handle, d: Duration) {
        handle.block_on(async {
            let _ = tokio::time::timeout(d, self.shutdown.cancelled()).await;
        });
    }

    /// Looks at the headers of the journal files (rate-limited unless `now`).
    fn check_files(&mut self, open: &mut Open, now: bool) {
        if !now && !file_check_due(self.last_file_check, Instant::now()) {
            return;
        }
        self.last_file_check = Some(Instant::now());
        let paths: Vec<PathBuf> = match &self.location {
            Location::Files(_) => open.files.clone(),
            location => location
                .directories()
                .iter()
                .flat_map(|d| files::journal_files(d))
                .collect(),
        };
        for bad in self.file_checks.check(&paths) {
            tracing::warn!(
                receiver = %self.id,
                file = %bad.path.display(),
                problem = %bad.problem,
                "a journal file cannot be read; the other files are read (journalctl --verify --file tells more)"
            );
            self.count(|c| c.files_failed += 1);
        }
    }

    /// The position up to which everything read was handled: the last
    /// entry, or just before the entry that started the oldest open group.
    fn checkpoint_position(&self) -> u64 {
        match self.oldest_held() {
            Some(start) => start.pos.saturating_sub(1),
            None => self.pos,
        }
    }

    /// The first entry of the oldest open group or report.
    fn oldest_held(&self) -> Option<&Arc<Start>> {
        [self.groups.oldest(), self.report_start.as_ref()]
            .into_iter()
            .flatten()
            .min_by_key(|s| s.pos)
    }

    /// Where a restart resumes once everything up to
    /// [`Reader::checkpoint_position`] is delivered.
    fn checkpoint_value(&mut self, journal: Option<&mut Journal>) -> Option<Checkpoint> {
        if let Some(start) = self.oldest_held() {
            return start.cursor.clone().map(|cursor| Checkpoint {
                cursor,
                resume: Resume::At,
            });
        }
        if let Some(journal) = journal {
            self.remember_cursor(journal);
        }
        self.known_cursor().map(|cursor| Checkpoint {
            cursor,
            resume: Resume::After,
        })
    }

    /// Sends the batch being collected with a finalizer whose outcome moves
    /// the checkpoint.
    fn flush(&mut self, journal: Option<&mut Journal>, handle: &Handle) {
        self.deadline = None;
        let batch = std::mem::take(&mut self.batch);
        let through = self.checkpoint_position();
        let advance = !self.stalled && self.flushed_through.is_none_or(|f| through > f);
        let checkpoint = if advance {
            self.flushed_through = Some(through);
            Some(self.checkpoint_value(journal))
        } else {
            None
        };
        let Some(logs) = self.logs.clone().filter(|_| !batch.is_empty()) else {
            if let Some(value) = checkpoint {
                self.tracker.skip_through(through, value);
            }
            return;
        };
        let items = batch.len();
        let permit = handle.block_on(self.acquire_send_slot());
        let Some(permit) = permit else {
            tracing::warn!(
                receiver = %self.id,
                records = items,
                "shutting down with the pipeline still busy; the last journal records are left to be read again at the next start"
            );
            self.telemetry.refused(Signal::Logs, items);
            self.stalled = true;
            return;
        };
        let entry = checkpoint.map(|value| self.tracker.register(through, value));
        let payload = Arc::new(Payload::Logs(batch.into_resource_logs()));
        let shutdown = self.shutdown.clone();
        let sent = handle.block_on(async {
            let send = consume_retrying(logs.as_ref(), &payload, false, true, &shutdown);
            tokio::pin!(send);
            tokio::select! {
                biased;
                sent = &mut send => Some(sent),
                // Shutting down behind a pipeline that does not take it:
                // a bounded wait, then the batch is left to the next start.
                () = shutdown.cancelled() => tokio::time::timeout(SHUTDOWN_SEND_WAIT, &mut send).await.ok(),
            }
        });
        let Some(sent) = sent else {
            tracing::warn!(
                receiver = %self.id,
                records = items,
                "shutting down with the pipeline still busy; the last journal records are left to be read again at the next start"
            );
            self.telemetry.refused(Signal::Logs, items);
            if let Some(entry) = entry {
                self.tracker.settle(entry, DeliveryStatus::Failed);
            }
            self.stalled = true;
            return;
        };
        match sent {
            Ok(status) => {
                self.telemetry.accepted(Signal::Logs, items);
                let tracker = self.tracker.clone();
                handle.spawn(async move {
                    let outcome = match status {
                        Some(status) => status.await.unwrap_or(DeliveryStatus::Failed),
                        None => DeliveryStatus::Delivered,
                    };
                    if let Some(entry) = entry {
                        tracker.settle(entry, outcome);
                    }
                    drop(permit);
                });
            }
            Err(err) => {
                tracing::warn!(receiver = %self.id, error = %err, records = items, "the pipeline did not take journal records");
                self.telemetry.not_accepted(Signal::Logs, items, &err);
                if let Some(entry) = entry {
                    let outcome = match err {
                        ConsumeError::Permanent(_) => DeliveryStatus::Rejected,
                        _ => DeliveryStatus::Failed,
                    };
                    self.tracker.settle(entry, outcome);
                }
            }
        }
    }

    /// A place among the unacknowledged batches: waits while all are taken;
    /// at shutdown, waits a bounded time.
    async fn acquire_send_slot(&self) -> Option<OwnedSemaphorePermit> {
        let acquire = Arc::clone(&self.in_flight).acquire_owned();
        tokio::pin!(acquire);
        tokio::select! {
            biased;
            permit = &mut acquire => permit.ok(),
            () = self.shutdown.cancelled() => {
                tokio::time::timeout(SHUTDOWN_SEND_WAIT, &mut acquire)
                    .await
                    .ok()
                    .and_then(Result::ok)
            }
        }
    }
}

/// Gives a runtime OOM entry its incident: by the entry's process, its
/// container and its cgroup, as journald recorded them.
fn join_incident(
    hub: &crate::incidents::IncidentHub,
    record: &mut opentelemetry_proto::tonic::logs::v1::LogRecord,
    facts: &EntryFacts,
) {
    let pid = facts.pid.and_then(|p| i32::try_from(p).ok());
    let identity = crate::incidents::Identity {
        pids: pid.into_iter().collect(),
        container_id: facts.container_id.clone(),
        cgroup: facts.cgroup.clone(),
        pod_container: None,
    };
    let source = facts
        .identifier
        .as_deref()
        .or(facts.comm.as_deref())
        .unwrap_or("journal");
    crate::incidents::runtime::register(hub, record, identity, &format!("journal:{source}"), pid);
}

/// When to try opening the journal again.
enum Retry {
    After(Duration),
    /// Once a journal file appears in the location's directories.
    OnceJournalFile,
}

/// An idle wait where inotify sees every change: about
/// [`WATCHED_IDLE_WAIT`], ending on the shared grid (from `now`, where the
/// caller's deadline starts), so the wake-up that wakes the periodic work
/// wakes this reader too.
fn watched_idle_wait(now: tokio::time::Instant) -> Duration {
    crate::clock::on_grid(now + WATCHED_IDLE_WAIT, WATCHED_IDLE_WAIT).saturating_duration_since(now)
}

/// Whether the journal files' headers are due for a look, the last look
/// having been at `last`. A second of slack: idle wake-ups come on the 10 s
/// grid, each a little late, and a look taken late must not make the next
/// one wait a period more.
fn file_check_due(last: Option<Instant>, now: Instant) -> bool {
    last.is_none_or(|t| {
        now.saturating_duration_since(t) + Duration::from_secs(1) >= FILE_CHECK_INTERVAL
    })
}

#[cfg(test)]
mod idle_tests {
    use super::*;

    /// Every idle wait ends on a point of the shared 10 s grid (where the
    /// memory scrape and the receivers' counters wake the runtime anyway),
    /// about 10 s away, from whatever instant it starts.
    #[test]
    fn a_watched_idle_wait_ends_on_the_shared_grid() {
        let start = tokio::time::Instant::now();
        for offset_ms in [0, 1, 2_500, 4_999, 5_001, 7_300, 9_999, 10_000, 23_456] {
            let now = start + Duration::from_millis(offset_ms);
            let wait = watched_idle_wait(now);
            let end = now + wait;
            assert_eq!(
                crate::clock::on_grid(end, WATCHED_IDLE_WAIT),
                end,
                "from +{offset_ms} ms the wait ends off the grid"
            );
            assert!(
                wait >= WATCHED_IDLE_WAIT / 2 && wait <= WATCHED_IDLE_WAIT * 3 / 2,
                "from +{offset_ms} ms: {wait:?}"
            );
        }
    }

    /// A look at the headers taken late on one grid point is not skipped
    /// on the next (it would wait a whole period more); one taken a few
    /// seconds ago is.
    #[test]
    fn the_header_check_keeps_to_the_grid_when_a_look_was_late() {
        let last = Instant::now();
        assert!(file_check_due(None, last), "never looked: due");
        assert!(!file_check_due(Some(last), last + Duration::from_secs(5)));
        assert!(
            file_check_due(Some(last), last + Duration::from_millis(9_950)),
            "the next grid point, the last look 50 ms late on its own"
        );
        assert!(file_check_due(Some(last), last + FILE_CHECK_INTERVAL));
        assert!(!file_check_due(
            Some(last),
            last + Duration::from_millis(8_900)
        ));
    }
}

#[cfg(test)]
mod incident_tests {
    use std::sync::Arc;

    use opentelemetry_proto::tonic::common::v1::any_value;
    use opentelemetry_proto::tonic::logs::v1::LogRecord;

    use super::*;
    use crate::incidents::{IncidentHub, INCIDENT_ID};
    use crate::pipeline::data::kv_str;
    use crate::receivers::oom::kill::{OomKill, Scope, Source, Trigger, Victim};

    fn runtime_record(runtime: &str) -> LogRecord {
        LogRecord {
            time_unix_nano: 101_000_000_000,
            attributes: vec![
                kv_str("oom.runtime", runtime),
                kv_str("oom.pattern", "go.fatal_out_of_memory"),
            ],
            ..LogRecord::default()
        }
    }

    fn id(record: &LogRecord) -> Option<String> {
        record
            .attributes
            .iter()
            .find(|kv| kv.key == INCIDENT_ID)
            .and_then(|kv| kv.value.as_ref())
            .and_then(|v| match &v.value {
                Some(any_value::Value::StringValue(s)) => Some(s.clone()),
                _ => None,
            })
    }

    #[test]
    fn an_entry_joins_the_kill_of_its_process_or_of_its_service() {
        let hub = IncidentHub::default();
        hub.enable(
            crate::incidents::DEFAULT_BEFORE,
            crate::incidents::DEFAULT_AFTER,
        );
        let kill = |pid, cgroup: &str| {
            Arc::new(OomKill {
                time_unix_nano: 100_000_000_000,
                kernel_time_ns: None,
                source: Source::Kmsg,
                victim: Victim {
                    pid,
                    cgroup: Some(cgroup.to_owned()),
                    ..Victim::default()
                },
                trigger: Trigger::default(),
                scope: Scope::default(),
            })
        };
        let by_pid = hub.kill(kill(42, "/system.slice/a.service"), None);
        let by_unit = hub.kill(kill(7, "/system.slice/b.service"), None);

        let mut record = runtime_record("go");
        let facts = EntryFacts {
            pid: Some(42),
            cgroup: Some("/system.slice/a.service".into()),
            ..EntryFacts::default()
        };
        join_incident(&hub, &mut record, &facts);
        assert_eq!(id(&record).as_ref(), Some(&by_pid));

        // A restarted service: another pid, the same unit cgroup.
        let mut record = runtime_record("go");
        let facts = EntryFacts {
            pid: Some(99),
            cgroup: Some("/system.slice/b.service".into()),
            ..EntryFacts::default()
        };
        join_incident(&hub, &mut record, &facts);
        assert_eq!(id(&record).as_ref(), Some(&by_unit));

        // Another process elsewhere: an incident of its own.
        let mut record = runtime_record("go");
        let facts = EntryFacts {
            pid: Some(5),
            cgroup: Some("/user.slice".into()),
            ..EntryFacts::default()
        };
        join_incident(&hub, &mut record, &facts);
        let own = id(&record).expect("an id");
        assert_ne!(own, by_pid);
        assert_ne!(own, by_unit);
        assert_eq!(hub.recent(10).len(), 3);
    }
}
