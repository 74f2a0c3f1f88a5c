//! The `kmsg` receiver: the kernel log (`/dev/kmsg`) as log records.
//!
//! Every kernel record is a candidate; by default only those that matter are
//! sent: the kernel's OOM report grouped into one record (as soon as its
//! "Killed process" line arrives), and records a pattern of the library
//! matches. `include_all` sends every record. Records lost to ring-buffer
//! overwrites are reported as a record, a warning and `oomscope.kmsg.records.lost`.
//!
//! Delivery is at-least-once across restarts: with `storage`, the sequence
//! number of the last record whose batch was acknowledged (`Delivered`, or
//! `Rejected` for good) is stored with the boot id, and reading resumes after
//! it. The checkpoint never moves past a batch still in flight or one that
//! failed, nor past the start of an OOM report still being assembled.

pub mod checkpoint;
pub mod kernel_records;
pub mod metrics;

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use opentelemetry_proto::tonic::logs::v1::LogRecord;
use serde::Deserialize;
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::ReceiverOutputs;
use crate::component::{
    BuildContext, ComponentConfig, Factory, ReceiverConfig, ReceiverFactory, Reference, Stability,
    StartFuture,
};
use crate::config::{from_node, ComponentId, ConfigError, GoDuration, Node, ValidationError};
use crate::kernel_log::{
    KmsgEvent, KmsgReader, KmsgRecord, OomReport, OomReportAssembler, StartAt,
};
use crate::patterns::{Library, UserPattern};
use crate::pipeline::data::scoped_logs;
use crate::pipeline::{
    consume_retrying, Batch, ConsumeError, DeliveryStatus, DynConsumer, Payload, Signal,
};
use crate::telemetry::ReceiverMetrics;
use checkpoint::AckTracker;
use kernel_records::{Clock, Counters, KERNEL_RUNTIME, OOM_REPORT_PATTERN};

/// Where reading starts when there is no checkpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum StartAtConfig {
    /// Only records written after the receiver starts.
    #[default]
    End,
    /// Everything still in the kernel's ring buffer.
    Beginning,
}

/// `kmsg` receiver configuration.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KmsgReceiverConfig {
    /// The kernel log device (or a saved dump: one record per line).
    pub path: PathBuf,
    /// `end` or `beginning`: where a first start (no usable checkpoint) reads from.
    pub start_at: StartAtConfig,
    /// `file_storage[/name]` keeping the checkpoint; without it every start
    /// follows `start_at`.
    pub storage: Option<ComponentId>,
    /// Send every kernel record, not only OOM reports and pattern matches.
    pub include_all: bool,
    /// Patterns added to the built-in library.
    pub patterns: Vec<UserPattern>,
    /// Built-in patterns turned off, by name (`*` wildcards).
    pub disable_patterns: Vec<String>,
    /// Send the kernel's OOM kill report as one record (and, where no
    /// report could be assembled, its lines as pattern records). Turn off
    /// where an `oom` receiver runs in the same agent: it reports every
    /// kill with the same facts, read from the same report (the default
    /// config does); the rest of the kernel's memory trouble (allocation
    /// failures, no killable process, panic on OOM) is still sent.
    pub oom_reports: bool,
    /// How long records are collected before a batch is sent.
    pub batch_wait: GoDuration,
    /// Records per batch at most; a full batch is sent at once.
    pub max_batch_records: usize,
    /// Batches sent but not yet acknowledged, at most; reading waits beyond.
    pub max_unacknowledged_batches: usize,
    /// How often `oomscope.kmsg.records.lost` and `oom.log.matches` are reported.
    pub metrics_interval: GoDuration,
}

impl Default for KmsgReceiverConfig {
    fn default() -> Self {
        KmsgReceiverConfig {
            path: PathBuf::from("/dev/kmsg"),
            start_at: StartAtConfig::End,
            storage: None,
            include_all: false,
            patterns: Vec::new(),
            disable_patterns: Vec::new(),
            oom_reports: true,
            batch_wait: GoDuration::from_millis(200),
            max_batch_records: 1000,
            max_unacknowledged_batches: 64,
            metrics_interval: GoDuration::from_secs(10),
        }
    }
}

/// Upper bounds of the numeric keys.
const MAX_BATCH_RECORDS: usize = 100_000;
const MAX_UNACKNOWLEDGED_BATCHES: usize = 4096;
const MAX_BATCH_WAIT: Duration = Duration::from_secs(60);

impl KmsgReceiverConfig {
    /// `disable_patterns`, plus the kill-report patterns when `oom_reports`
    /// is off.
    fn disabled_patterns(&self) -> Vec<String> {
        let mut disabled = self.disable_patterns.clone();
        if !self.oom_reports {
            disabled.extend(OOM_KILL_REPORT_PATTERNS.iter().map(|p| p.to_string()));
        }
        disabled
    }
}

impl ComponentConfig for KmsgReceiverConfig {
    fn validate(&self) -> Result<(), ValidationError> {
        if self.path.as_os_str().is_empty() {
            return Err(ValidationError::at("path", "must not be empty"));
        }
        if self.batch_wait.get() > MAX_BATCH_WAIT {
            return Err(ValidationError::at(
                "batch_wait",
                format!("must be at most {}s", MAX_BATCH_WAIT.as_secs()),
            ));
        }
        if !(1..=MAX_BATCH_RECORDS).contains(&self.max_batch_records) {
            return Err(ValidationError::at(
                "max_batch_records",
                format!("must be between 1 and {MAX_BATCH_RECORDS}"),
            ));
        }
        if !(1..=MAX_UNACKNOWLEDGED_BATCHES).contains(&self.max_unacknowledged_batches) {
            return Err(ValidationError::at(
                "max_unacknowledged_batches",
                format!("must be between 1 and {MAX_UNACKNOWLEDGED_BATCHES}"),
            ));
        }
        if self.metrics_interval.is_zero() {
            return Err(ValidationError::at(
                "metrics_interval",
                "must be greater than zero",
            ));
        }
        Library::new(&self.patterns, &self.disabled_patterns())
            .map_err(|err| ValidationError::at("patterns", err.to_string()))?;
        Ok(())
    }

    fn references(&self) -> Vec<Reference> {
        self.storage
            .iter()
            .map(|id| {
                Reference::file_storage(
                    "storage",
                    id,
                    "the read position is kept in a file_storage extension",
                )
            })
            .collect()
    }
}

/// Makes `kmsg` receivers.
pub struct KmsgReceiverFactory;

impl Factory for KmsgReceiverFactory {
    fn type_names(&self) -> &'static [&'static str] {
        &["kmsg"]
    }

    fn stability(&self) -> Stability {
        Stability::Beta
    }

    fn description(&self) -> &'static str {
        "reads the kernel log (/dev/kmsg): each OOM report as one record, and lines that announce memory exhaustion"
    }
}

impl ReceiverFactory for KmsgReceiverFactory {
    fn decode(&self, node: &Node) -> Result<Box<dyn ReceiverConfig>, ConfigError> {
        Ok(Box::new(from_node::<KmsgReceiverConfig>(node)?))
    }
}

impl ReceiverConfig for KmsgReceiverConfig {
    fn start(
        &self,
        ctx: BuildContext,
        outputs: ReceiverOutputs,
    ) -> StartFuture<'_, JoinHandle<()>> {
        Box::pin(start(self, ctx, outputs))
    }
}

/// Patterns of the lines of an OOM kill report: with `oom_reports` off they
/// are left out of the library, so such lines are left to the `oom`
/// receiver even when no whole report was assembled (a header lost to the
/// kernel's rate limit, a gap).
const OOM_KILL_REPORT_PATTERNS: &[&str] = &[
    "kernel.oom_invoked",
    "kernel.oom_kill_summary",
    "kernel.memcg_oom_kill",
    "kernel.global_oom_kill",
    "kernel.killed_process",
    "kernel.oom_kill_sacrifice",
    "kernel.memcg_limit_legacy",
];

/// Events read ahead of processing.
const READ_QUEUE: usize = 1024;
/// Lines kept for the text of one OOM report (the assembler gives up on a
/// report after as many records), and their bytes.
const MAX_REPORT_LINES: usize = crate::kernel_log::oom_report::MAX_REPORT_RECORDS;
const MAX_REPORT_BYTES: usize = 256 * 1024;
/// At shutdown, how long the last batch waits for room among the
/// unacknowledged ones before it is left for the next start to read again.
const SHUTDOWN_SEND_WAIT: Duration = Duration::from_secs(5);

/// Opens the kernel log (failing here when it cannot be read) and spawns
/// the receiver.
pub async fn start(
    cfg: &KmsgReceiverConfig,
    ctx: BuildContext,
    outputs: ReceiverOutputs,
) -> anyhow::Result<JoinHandle<()>> {
    launch(cfg, ctx, outputs, Path::new(checkpoint::BOOT_ID_PATH)).await
}

/// [`start`] with this boot's id read from `boot_id_path`. The receiver's
/// task ends after shutdown once everything read was handed on.
async fn launch(
    cfg: &KmsgReceiverConfig,
    ctx: BuildContext,
    outputs: ReceiverOutputs,
    boot_id_path: &Path,
) -> anyhow::Result<JoinHandle<()>> {
    let cfg = cfg.clone();
    let id = ctx.id.clone();
    let library = Library::new(&cfg.patterns, &cfg.disabled_patterns())
        .map_err(|err| anyhow::anyhow!("receiver {id}: patterns: {err}"))?;

    let store = match &cfg.storage {
        Some(storage_id) => {
            let storage = ctx.extensions.storage(storage_id, &id)?;
            let kv = storage
                .kv("receiver", &id)
                .with_context(|| format!("receiver {id}: checkpoint store"))?;
            checkpoint::read_boot_id(boot_id_path).map(|boot_id| (kv, boot_id))
        }
        None => None,
    };
    let resume_after = match &store {
        Some((kv, boot_id)) => {
            let (kv, boot_id) = (kv.clone(), boot_id.clone());
            tokio::task::spawn_blocking(move || checkpoint::load(&kv, &boot_id))
                .await
                .context("loading the kmsg checkpoint")?
                .with_context(|| format!("receiver {id}: cannot read the checkpoint"))?
        }
        None => None,
    };
    let start_at = match (resume_after, cfg.start_at) {
        (Some(seq), _) => StartAt::After(seq),
        (None, StartAtConfig::End) => StartAt::End,
        (None, StartAtConfig::Beginning) => StartAt::Beginning,
    };
    // Starting at the end with a checkpoint store: the end as it is now is
    // the first checkpoint, so a restart before any new record does not
    // start at the (later) end again and skip what came in between.
    let first_checkpoint = if store.is_some() && start_at == StartAt::End {
        let path = cfg.path.clone();
        tokio::task::spawn_blocking(move || crate::kernel_log::reader::newest_seq(&path))
            .await
            .context("reading the kernel log's newest record")?
            .map_err(|err| anyhow::anyhow!("receiver {id}: {}: {err}", cfg.path.display()))?
    } else {
        None
    };
    let reader = KmsgReader::open(&cfg.path, start_at)
        .map_err(|err| anyhow::anyhow!("receiver {id}: {err}"))?;
    tracing::info!(receiver = %id, path = %cfg.path.display(), ?start_at, "reading the kernel log");

    let (tracker, updates) = AckTracker::new();
    if let Some(seq) = first_checkpoint {
        tracker.skip_through(seq);
    }
    if let Some((kv, boot_id)) = store {
        // Ends once every batch sent was settled (and the last checkpoint
        // written): detached, since acknowledgements come while the
        // pipelines drain, after the receiver stopped.
        drop(checkpoint::spawn_writer(kv, boot_id, updates));
    }

    let (events_tx, events_rx) = mpsc::channel(READ_QUEUE);
    let read_task = tokio::spawn(read_kernel_log(reader, events_tx, ctx.shutdown.clone()));
    let receiver = KmsgReceiver {
        telemetry: ctx.telemetry.receiver(&id, "kmsg"),
        in_flight: Arc::new(Semaphore::new(cfg.max_unacknowledged_batches)),
        cfg,
        library,
        assembler: OomReportAssembler::new(),
        report_lines: VecDeque::new(),
        report_bytes: 0,
        pending: Vec::new(),
        urgent: false,
        deadline: None,
        read_through: None,
        flushed_through: None,
        tracker,
        logs: outputs.logs,
        metrics: outputs.metrics,
        counters: Counters::default(),
        start_unix_nano: kernel_records::unix_now_nanos(),
        shutdown: ctx.shutdown.clone(),
    };
    Ok(tokio::spawn(async move {
        receiver.run(events_rx).await;
        read_task.abort();
    }))
}

/// Reads ahead into a bounded queue, so that the receiver's timers never
/// cancel a read midway.
async fn read_kernel_log(
    mut reader: KmsgReader,
    events: mpsc::Sender<std::io::Result<KmsgEvent>>,
    shutdown: CancellationToken,
) {
    loop {
        let event = tokio::select! {
            () = shutdown.cancelled() => return,
            event = reader.next() => event,
        };
        let end = event.is_err();
        if events.send(event).await.is_err() || end {
            return;
        }
    }
}

struct KmsgReceiver {
    cfg: KmsgReceiverConfig,
    library: Library,
    assembler: OomReportAssembler,
    /// The lines of the OOM report being assembled (seq, message).
    report_lines: VecDeque<(u64, String)>,
    report_bytes: usize,
    /// Records of the batch being collected.
    pending: Vec<LogRecord>,
    urgent: bool,
    /// When the batch being collected is sent.
    deadline: Option<Instant>,
    /// The last record read.
    read_through: Option<u64>,
    /// The last sequence number handed to the tracker.
    flushed_through: Option<u64>,
    tracker: AckTracker,
    in_flight: Arc<Semaphore>,
    logs: Option<DynConsumer>,
    metrics: Option<DynConsumer>,
    counters: Counters,
    start_unix_nano: u64,
    telemetry: ReceiverMetrics,
    shutdown: CancellationToken,
}

impl KmsgReceiver {
    async fn run(mut self, mut events: mpsc::Receiver<std::io::Result<KmsgEvent>>) {
        // On the shared grid: reported with the other periodic data. Not
        // at once: the counters are all zero.
        let mut metrics_tick = crate::clock::grid_interval(self.cfg.metrics_interval.get());
        let mut reading = true;
        loop {
            tokio::select! {
                biased;
                () = self.shutdown.cancelled() => break,
                event = events.recv(), if reading => match event {
                    Some(Ok(event)) => self.on_event(event).await,
                    Some(Err(err)) => {
                        if err.kind() == std::io::ErrorKind::UnexpectedEof {
                            tracing::info!(path = %self.cfg.path.display(), "end of the kernel log dump");
                        } else {
                            tracing::error!(path = %self.cfg.path.display(), error = %err, "reading the kernel log failed; the kmsg receiver reads no more");
                        }
                        reading = false;
                        self.flush().await;
                    }
                    None => reading = false,
                },
                () = sleep_until(self.deadline) => self.flush().await,
                _ = metrics_tick.tick() => self.send_metrics().await,
            }
        }
        // Records still queued were not taken: not checkpointed, read again
        // at the next start.
        drop(events);
        self.flush().await;
        self.send_metrics().await;
    }

    async fn on_event(&mut self, event: KmsgEvent) {
        match event {
            KmsgEvent::Record(kernel_record) => self.on_record(&kernel_record),
            KmsgEvent::Gap { missed } => {
                tracing::warn!(
                    path = %self.cfg.path.display(),
                    ?missed,
                    "kernel log records were overwritten before they were read"
                );
                self.counters.records_lost = self
                    .counters
                    .records_lost
                    .saturating_add(missed.unwrap_or(1));
                self.pending.push(kernel_records::gap_log(missed));
            }
        }
        if self.pending.len() >= self.cfg.max_batch_records || self.urgent {
            self.flush().await;
        } else if self.deadline.is_none() {
            self.deadline = Some(Instant::now() + self.cfg.batch_wait.get());
        }
    }

    fn on_record(&mut self, kernel_record: &KmsgRecord) {
        self.read_through = Some(kernel_record.seq);
        let clock = Clock::now();
        let completed = self.assembler.push(kernel_record);
        if let Some(unfinished) = self.assembler.take_unfinished() {
            // What a report without its "Killed process" line had, noted.
            let body = self.take_unfinished_text(&unfinished, kernel_record);
            if self.cfg.oom_reports {
                self.pending.push(kernel_records::oom_report_log(
                    &unfinished,
                    body,
                    kernel_record,
                    clock,
                ));
            }
        }
        let in_report = if let Some(report) = completed {
            let body = self.take_report_text(&report, kernel_record);
            if self.cfg.oom_reports {
                self.counters
                    .count_match(OOM_REPORT_PATTERN, KERNEL_RUNTIME);
                self.pending.push(kernel_records::oom_report_log(
                    &report,
                    body,
                    kernel_record,
                    clock,
                ));
                self.urgent = true;
            }
            true
        } else if let Some(first_seq) = self.assembler.pending_first_seq() {
            self.keep_report_line(first_seq, kernel_record);
            true
        } else {
            self.report_lines.clear();
            self.report_bytes = 0;
            false
        };
        // A line of an OOM report is reported with the report, not again
        // on its own (unless every record is wanted).
        let matched = if in_report {
            None
        } else {
            self.library.match_line(&kernel_record.message)
        };
        if let Some(matched) = &matched {
            self.counters.count_match(matched.pattern, matched.runtime);
        }
        if matched.is_some() || self.cfg.include_all {
            self.pending.push(kernel_records::record_log(
                kernel_record,
                matched.as_ref(),
                clock,
            ));
        }
    }

    /// Keeps a line of the report being assembled (bounded).
    fn keep_report_line(&mut self, first_seq: u64, kernel_record: &KmsgRecord) {
        if self
            .report_lines
            .front()
            .is_some_and(|(seq, _)| *seq != first_seq)
        {
            // A new report started.
            self.report_lines.clear();
            self.report_bytes = 0;
        }
        if self.report_lines.len() < MAX_REPORT_LINES
            && self.report_bytes + kernel_record.message.len() <= MAX_REPORT_BYTES
        {
            self.report_bytes += kernel_record.message.len() + 1;
            self.report_lines
                .push_back((kernel_record.seq, kernel_record.message.clone()));
        }
    }

    /// The text of a completed report: its lines, the last one included.
    fn take_report_text(&mut self, report: &OomReport, last: &KmsgRecord) -> String {
        let mut text = String::with_capacity(self.report_bytes + last.message.len());
        for (seq, line) in self.report_lines.drain(..) {
            if (report.first_seq..=report.last_seq).contains(&seq) {
                text.push_str(&line);
                text.push('\n');
            }
        }
        self.report_bytes = 0;
        text.push_str(&last.message);
        text
    }

    /// The text of a report that ended without its "Killed process" line:
    /// its lines, `current` included when it is the report's last.
    fn take_unfinished_text(&mut self, report: &OomReport, current: &KmsgRecord) -> String {
        let mut lines: Vec<&str> = self
            .report_lines
            .iter()
            .filter(|(seq, _)| (report.first_seq..=report.last_seq).contains(seq))
            .map(|(_, line)| line.as_str())
            .collect();
        if current.seq == report.last_seq {
            lines.push(&current.message);
        }
        let text = lines.join("\n");
        self.report_lines.clear();
        self.report_bytes = 0;
        text
    }

    /// The sequence number every record up to which has been put in a
    /// batch (or filtered out): the last one read, but not the start of an
    /// OOM report still being assembled.
    fn checkpoint_through(&self) -> Option<u64> {
        let through = self.read_through?;
        match self.assembler.pending_first_seq() {
            Some(first) => first.checked_sub(1).map(|before| before.min(through)),
            None => Some(through),
        }
        .filter(|&through| self.flushed_through.is_none_or(|flushed| through > flushed))
    }

    /// Sends the batch being collected with a finalizer whose outcome moves
    /// the checkpoint.
    async fn flush(&mut self) {
        self.deadline = None;
        let records = std::mem::take(&mut self.pending);
        let urgent = std::mem::take(&mut self.urgent);
        let through = self.checkpoint_through();
        if let Some(through) = through {
            self.flushed_through = Some(through);
        }
        let Some(logs) = self.logs.clone().filter(|_| !records.is_empty()) else {
            if let Some(through) = through {
                self.tracker.skip_through(through);
            }
            return;
        };
        let items = records.len();
        let Some(permit) = self.acquire_send_slot().await else {
            tracing::warn!(
                records = items,
                "shutting down with the pipeline still busy; the last kernel log records are left to be read again at the next start"
            );
            self.telemetry.refused(Signal::Logs, items);
            return;
        };
        let entry = through.map(|through| self.tracker.register(through));
        let payload = Arc::new(Payload::Logs(vec![scoped_logs(
            kernel_records::SCOPE_NAME,
            records,
        )]));
        let status = match consume_retrying(logs.as_ref(), &payload, urgent, true, &self.shutdown)
            .await
        {
            Ok(status) => {
                self.telemetry.accepted(Signal::Logs, items);
                status
            }
            Err(err) => {
                tracing::warn!(error = %err, records = items, "the pipeline did not take kernel log records");
                self.telemetry.not_accepted(Signal::Logs, items, &err);
                if let Some(entry) = entry {
                    let outcome = match err {
                        ConsumeError::Permanent(_) => DeliveryStatus::Rejected,
                        _ => DeliveryStatus::Failed,
                    };
                    self.tracker.settle(entry, outcome);
                }
                None
            }
        };
        if let Some(status) = status {
            let tracker = self.tracker.clone();
            tokio::spawn(async move {
                let outcome = status.await.unwrap_or(DeliveryStatus::Failed);
                if let Some(entry) = entry {
                    tracker.settle(entry, outcome);
                }
                drop(permit);
            });
        }
    }

    /// A place among the unacknowledged batches: waits while all are taken
    /// (back-pressure reaches the kernel's ring buffer, and overwritten
    /// records are reported as a gap); at shutdown, waits a bounded time.
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

    async fn send_metrics(&self) {
        let Some(metrics) = &self.metrics else {
            return;
        };
        let payload = Payload::Metrics(vec![self.counters.metrics(self.start_unix_nano)]);
        let items = payload.item_count();
        match metrics.consume(Batch::new(payload)).await {
            Ok(()) => self.telemetry.accepted(Signal::Metrics, items),
            Err(err) => {
                // Cumulative: the next report carries the counts.
                tracing::debug!(error = %err, "the pipeline did not take the kmsg counters");
                self.telemetry.not_accepted(Signal::Metrics, items, &err);
            }
        }
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests;
