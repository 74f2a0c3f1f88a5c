//! The exporter helper: what every exporter shares, like the collector's
//! exporterhelper: a bounded sending queue (in memory, or persistent through a
//! `file_storage` extension), retry with exponential backoff and jitter,
//! a per-request timeout, the agent's own exporter metrics, and settling of
//! acknowledgements.
//!
//! An exporter implements [`ExportClient`] (one attempt at sending one
//! request) and calls [`spawn`].
//!
//! The persistent queue's storage (crash-safe FIFO of byte items) is
//! [`PersistentQueue`] in the `file_storage` extension; this module encodes
//! requests for it (a signal tag byte, then the OTLP `Export*ServiceRequest`
//! in protobuf) and runs its workers.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use prost::Message as _;
use serde::Deserialize;
use tokio::sync::{Semaphore, TryAcquireError};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;
use tokio_util::sync::{CancellationToken, DropGuard};

use crate::component::BuildContext;
use crate::config::{ComponentId, GoDuration};
use crate::extensions::file_storage::{PersistentQueue, Popped};
use crate::pipeline::{
    Batch, ConsumeError, Consumer, DeliveryStatus, DynConsumer, Finalizers, Payload, Signal,
};
use crate::telemetry::ExporterMetrics;

/// A successful answer; `rejected` > 0 is an OTLP partial success (logged,
/// counted, never retried).
#[derive(Debug, Default, Clone, PartialEq)]
pub struct ExportResponse {
    pub rejected: u64,
    pub message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportErrorKind {
    /// Worth retrying (OTLP retryable codes, connection errors, timeouts).
    Retryable,
    /// Never retried; the data is dropped and counted as failed.
    Permanent,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{message}")]
pub struct ExportError {
    pub kind: ExportErrorKind,
    /// The server's throttling hint (gRPC RetryInfo, HTTP Retry-After).
    pub retry_after: Option<Duration>,
    pub message: String,
}

impl ExportError {
    pub fn retryable(message: impl Into<String>) -> Self {
        ExportError {
            kind: ExportErrorKind::Retryable,
            retry_after: None,
            message: message.into(),
        }
    }

    pub fn permanent(message: impl Into<String>) -> Self {
        ExportError {
            kind: ExportErrorKind::Permanent,
            retry_after: None,
            message: message.into(),
        }
    }
}

/// One attempt at delivering one request.
#[async_trait]
pub trait ExportClient: Send + Sync + 'static {
    /// The payload is shared (`Arc`) so that a client can encode it, or hand
    /// it to a transport, without copying the data.
    async fn export(&self, payload: &Arc<Payload>) -> Result<ExportResponse, ExportError>;

    /// Called once after the queue has drained (flush files, close connections).
    async fn shutdown(&self) {}
}

/// `retry_on_failure`, with the collector's defaults.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetryConfig {
    pub enabled: bool,
    pub initial_interval: GoDuration,
    pub max_interval: GoDuration,
    /// 0 retries forever.
    pub max_elapsed_time: GoDuration,
    pub multiplier: f64,
    pub randomization_factor: f64,
}

impl Default for RetryConfig {
    fn default() -> Self {
        RetryConfig {
            enabled: true,
            initial_interval: GoDuration::from_secs(5),
            max_interval: GoDuration::from_secs(30),
            max_elapsed_time: GoDuration::from_secs(300),
            multiplier: 1.5,
            randomization_factor: 0.5,
        }
    }
}

impl RetryConfig {
    pub fn disabled() -> Self {
        RetryConfig {
            enabled: false,
            ..RetryConfig::default()
        }
    }

    pub fn validate(&self) -> Result<(), String> {
        if self.multiplier < 1.0 || !self.multiplier.is_finite() {
            return Err("retry_on_failure::multiplier must be at least 1".into());
        }
        if !(0.0..=1.0).contains(&self.randomization_factor) {
            return Err("retry_on_failure::randomization_factor must be between 0 and 1".into());
        }
        if !self.enabled {
            return Ok(());
        }
        // The collector's configretry rules; a zero wait would spin.
        if self.initial_interval.is_zero() {
            return Err("retry_on_failure::initial_interval must be greater than zero".into());
        }
        if self.max_interval.get() < self.initial_interval.get() {
            return Err(format!(
                "retry_on_failure::max_interval ({}) must be at least initial_interval ({})",
                self.max_interval, self.initial_interval
            ));
        }
        let max_elapsed = self.max_elapsed_time.get();
        if !max_elapsed.is_zero() && max_elapsed < self.max_interval.get() {
            return Err(format!(
                "retry_on_failure::max_elapsed_time ({}) must be 0 (retry forever) or at least max_interval ({})",
                self.max_elapsed_time, self.max_interval
            ));
        }
        Ok(())
    }
}

/// Largest in-memory `queue_size`: the channel allocates its slots up front.
pub const MAX_MEMORY_QUEUE_SIZE: usize = 100_000;

/// `sending_queue`, with the collector's defaults (sizer: requests).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QueueConfig {
    pub enabled: bool,
    pub num_consumers: usize,
    pub queue_size: usize,
    /// When full: wait (push back to the pipeline) instead of refusing.
    /// Our default is to wait, so that a slow exporter slows its receivers
    /// rather than dropping data.
    pub block_on_overflow: bool,
    /// `file_storage[/name]`: a persistent queue that survives kill -9.
    pub storage: Option<ComponentId>,
}

impl Default for QueueConfig {
    fn default() -> Self {
        QueueConfig {
            enabled: true,
            num_consumers: 10,
            queue_size: 1000,
            block_on_overflow: true,
            storage: None,
        }
    }
}

impl QueueConfig {
    pub fn validate(&self) -> Result<(), String> {
        if self.enabled && self.queue_size == 0 {
            return Err("sending_queue::queue_size must be positive".into());
        }
        if self.enabled && self.num_consumers == 0 {
            return Err("sending_queue::num_consumers must be positive".into());
        }
        if self.enabled && self.storage.is_none() && self.queue_size > MAX_MEMORY_QUEUE_SIZE {
            return Err(format!(
                "sending_queue::queue_size must be at most {MAX_MEMORY_QUEUE_SIZE} for an in-memory queue \
                 (its slots are allocated up front); set sending_queue::storage for a larger, persistent queue"
            ));
        }
        Ok(())
    }
}

/// What [`spawn`] needs besides the client.
#[derive(Debug, Clone)]
pub struct ExporterSettings {
    /// Per attempt; `None` for none.
    pub timeout: Option<Duration>,
    pub retry: RetryConfig,
    pub queue: QueueConfig,
}

/// After shutdown has begun, how long a consume waits for room in a full
/// queue before refusing. Before shutdown a blocked consume waits as long as
/// it takes (that is the back-pressure). During the drain the queue keeps
/// moving (every item gets one more attempt, bounded by the per-attempt
/// timeout), so what processors flush at shutdown is still taken if room
/// appears soon; but a dead backend must not hold the shutdown hostage, and a
/// refused batch is not lost: its finalizers settle `Failed`, so a source with
/// a checkpoint offers it again on the next run.
const DRAIN_ENQUEUE_WAIT: Duration = Duration::from_secs(5);

/// Upper bound on a server's throttling hint (`Retry-After`, `RetryInfo`), so
/// that a bogus hint cannot park a request for days.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(600);

/// Shortest pause before a persistent queue item whose retries ran out is
/// tried again.
const MIN_REQUEUE_PAUSE: Duration = Duration::from_secs(1);

/// While the persistent queue's storage cannot be written (a full disk), a
/// waiting request tries again after this long at first, then up to
/// [`STORAGE_RETRY_MAX`].
const STORAGE_RETRY_MIN: Duration = Duration::from_millis(100);
const STORAGE_RETRY_MAX: Duration = Duration::from_secs(2);

/// A broken backend fails every request: log each kind of failure at most
/// this often (with the count of messages suppressed in between).
const LOG_INTERVAL: Duration = Duration::from_secs(10);

/// Starts the exporter: returns the consumer that enqueues into its sending
/// queue, and the task that drains the queue through `client`.
///
/// - Queue disabled: `consume` exports (with retries) before returning and
///   reports the outcome as its error.
/// - In-memory queue: `consume` returns once the request is queued;
///   `num_consumers` workers export. The task ends once the consumer is
///   dropped and the queue is drained (after `ctx.shutdown` each remaining
///   request gets one attempt, no retries; once an attempt has failed during
///   the drain, the rest is failed without attempts, counted and logged
///   once), then calls `client.shutdown()`.
/// - Persistent queue (`storage`): `consume` returns once the request is
///   written to disk, and settles its finalizers `Delivered` then. An item is
///   deleted once sent or permanently rejected; when its retries run out it
///   goes back to the queue and is tried again after a pause. Workers
///   stop taking items at shutdown (or when the consumer is dropped); what is
///   left stays on disk for the next run, including a request whose export
///   was interrupted (at-least-once: it may be sent twice).
pub async fn spawn(
    ctx: &BuildContext,
    settings: ExporterSettings,
    client: Arc<dyn ExportClient>,
) -> anyhow::Result<(DynConsumer, JoinHandle<()>)> {
    let id = &ctx.id;
    settings
        .retry
        .validate()
        .map_err(|e| anyhow::anyhow!("{id}: {e}"))?;
    settings
        .queue
        .validate()
        .map_err(|e| anyhow::anyhow!("{id}: {e}"))?;
    let queue = settings.queue.clone();
    let capacity = if queue.enabled { queue.queue_size } else { 0 };
    let core = Arc::new(Core {
        id: id.clone(),
        client: Arc::clone(&client),
        timeout: settings.timeout,
        retry: settings.retry,
        metrics: ctx.telemetry.exporter(id, capacity),
        shutdown: ctx.shutdown.clone(),
        log: LogLimiter::default(),
        failed_attempts: AtomicU64::new(0),
        drain_failed: AtomicBool::new(false),
        drain_dropped_requests: AtomicU64::new(0),
        drain_dropped_items: AtomicU64::new(0),
    });

    if !queue.enabled {
        let dropped = CancellationToken::new();
        let consumer = DirectConsumer {
            core,
            _dropped: dropped.clone().drop_guard(),
        };
        let handle = tokio::spawn(async move {
            dropped.cancelled().await;
            client.shutdown().await;
        });
        return Ok((Arc::new(consumer), handle));
    }

    if let Some(storage_id) = &queue.storage {
        let storage = ctx.extensions.storage(storage_id, id)?;
        let owner = id.clone();
        // Opening scans the directory: blocking I/O.
        let disk = tokio::task::spawn_blocking(move || storage.queue("exporter", &owner))
            .await
            .map_err(|e| anyhow::anyhow!("{id}: opening the persistent queue failed: {e}"))?
            .map_err(|e| anyhow::anyhow!("{id}: sending_queue::storage {storage_id}: {e:#}"))?;
        return Ok(spawn_persistent(core, client, &queue, disk));
    }

    let (tx, rx) = async_channel::bounded::<Request>(queue.queue_size);
    let mut workers = JoinSet::new();
    for _ in 0..queue.num_consumers {
        workers.spawn(memory_worker(Arc::clone(&core), rx.clone()));
    }
    drop(rx);
    let consumer = MemoryQueueConsumer {
        core: Arc::clone(&core),
        tx,
        block_on_overflow: queue.block_on_overflow,
    };
    let handle = tokio::spawn(async move {
        join_workers(&core.id, workers).await;
        core.log_drain_drops();
        client.shutdown().await;
        tracing::debug!(exporter = %core.id, "sending queue drained; exporter stopped");
    });
    Ok((Arc::new(consumer), handle))
}

/// What every mode shares: one request's export with retries, and its
/// accounting.
struct Core {
    id: ComponentId,
    client: Arc<dyn ExportClient>,
    timeout: Option<Duration>,
    retry: RetryConfig,
    metrics: ExporterMetrics,
    shutdown: CancellationToken,
    log: LogLimiter,
    /// Failed attempts since the last success, to log the recovery once.
    failed_attempts: AtomicU64,
    /// An attempt failed (retryably) after shutdown began: the drain stops
    /// attempting and fails what is left fast.
    drain_failed: AtomicBool,
    /// Requests and items failed fast during the drain, for one summary.
    drain_dropped_requests: AtomicU64,
    drain_dropped_items: AtomicU64,
}

/// How one request ended.
#[derive(Debug)]
enum Outcome {
    Sent(ExportResponse),
    /// A permanent error: never retried.
    Rejected(ExportError),
    /// Retryable, but no retry is left.
    GaveUp {
        error: ExportError,
        why: &'static str,
    },
    /// `stop` fired after at least one failed attempt.
    Stopped(ExportError),
}

impl Outcome {
    /// Where no disk holds the request, stopping means giving up.
    fn stopped_gives_up(self) -> Outcome {
        match self {
            Outcome::Stopped(error) => Outcome::GaveUp {
                error,
                why: "shutting down",
            },
            other => other,
        }
    }
}

impl Core {
    async fn attempt(&self, payload: &Arc<Payload>) -> Result<ExportResponse, ExportError> {
        match self.timeout {
            Some(limit) => match tokio::time::timeout(limit, self.client.export(payload)).await {
                Ok(result) => result,
                Err(_) => Err(ExportError::retryable(format!(
                    "export timed out after {limit:?}"
                ))),
            },
            None => self.client.export(payload).await,
        }
    }

    /// Attempts until success, a permanent error, the end of the retry budget,
    /// or `stop` (checked only between attempts: every request gets at least
    /// one attempt, and an attempt in progress is not cut short).
    async fn export_with_retry(&self, payload: &Arc<Payload>, stop: &CancellationToken) -> Outcome {
        let started = Instant::now();
        let mut backoff = Backoff::new(&self.retry);
        loop {
            let error = match self.attempt(payload).await {
                Ok(response) => return Outcome::Sent(response),
                Err(e) if e.kind == ExportErrorKind::Permanent => return Outcome::Rejected(e),
                Err(e) => e,
            };
            self.failed_attempts.fetch_add(1, Ordering::Relaxed);
            if self.shutdown.is_cancelled() {
                // The backend fails during the drain: the rest of the
                // in-memory queue is given up without attempts (see
                // `memory_worker`).
                self.drain_failed.store(true, Ordering::Relaxed);
            }
            if !self.retry.enabled {
                return Outcome::GaveUp {
                    error,
                    why: "retry_on_failure is disabled",
                };
            }
            if stop.is_cancelled() {
                return Outcome::Stopped(error);
            }
            let mut wait = backoff.next_wait();
            let max_elapsed = self.retry.max_elapsed_time.get();
            // What is left of max_elapsed_time; `None` when retrying forever.
            let remaining =
                (!max_elapsed.is_zero()).then(|| max_elapsed.saturating_sub(started.elapsed()));
            match (error.retry_after, remaining) {
                (Some(hint), Some(remaining)) => {
                    wait = wait.max(hint.min(MAX_RETRY_AFTER));
                    // A server hint longer than the budget left: wait what is
                    // left and make a last attempt (as the collector does),
                    // rather than giving up at once.
                    if remaining.is_zero() {
                        return Outcome::GaveUp {
                            error,
                            why: "retry_on_failure::max_elapsed_time reached",
                        };
                    }
                    wait = wait.min(remaining);
                }
                (Some(hint), None) => wait = wait.max(hint.min(MAX_RETRY_AFTER)),
                (None, Some(remaining)) if wait > remaining => {
                    return Outcome::GaveUp {
                        error,
                        why: "retry_on_failure::max_elapsed_time reached",
                    };
                }
                (None, _) => {}
            }
            if let Some(suppressed) = self.log.allow("retry") {
                tracing::warn!(
                    exporter = %self.id,
                    error = %error.message,
                    interval = ?wait,
                    suppressed,
                    "Exporting failed. Will retry the request after interval."
                );
            }
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = stop.cancelled() => return Outcome::Stopped(error),
            }
        }
    }

    /// Logs, counts and settles one finished request. `Stopped` must have been
    /// dealt with by the caller.
    fn finish(
        &self,
        payload: &Payload,
        finalizers: Finalizers,
        outcome: &Outcome,
        started: Instant,
    ) {
        self.metrics.export_latency(started.elapsed());
        let signal = payload.signal();
        let items = payload.item_count();
        match outcome {
            Outcome::Sent(response) => {
                let failed = self.failed_attempts.swap(0, Ordering::Relaxed);
                if failed > 0 {
                    tracing::info!(exporter = %self.id, failed_attempts = failed, "Exporting succeeded again");
                }
                let rejected = usize::try_from(response.rejected)
                    .unwrap_or(usize::MAX)
                    .min(items);
                if rejected > 0 {
                    if let Some(suppressed) = self.log.allow("partial") {
                        tracing::warn!(
                            exporter = %self.id,
                            rejected,
                            message = %response.message,
                            suppressed,
                            "Partial success response"
                        );
                    }
                }
                self.metrics.sent(signal, items - rejected);
                self.metrics.send_failed(signal, rejected);
                finalizers.settle(DeliveryStatus::Delivered);
            }
            Outcome::Rejected(error) => {
                if let Some(suppressed) = self.log.allow("permanent") {
                    tracing::error!(
                        exporter = %self.id,
                        error = %error.message,
                        %signal,
                        dropped_items = items,
                        suppressed,
                        "Exporting failed. The error is not retryable. Dropping data."
                    );
                }
                self.metrics.send_failed(signal, items);
                finalizers.settle(DeliveryStatus::Rejected);
            }
            Outcome::GaveUp { error, why } => {
                if let Some(suppressed) = self.log.allow("gave_up") {
                    tracing::error!(
                        exporter = %self.id,
                        error = %error.message,
                        reason = why,
                        %signal,
                        dropped_items = items,
                        suppressed,
                        "Exporting failed. Dropping data."
                    );
                }
                self.metrics.send_failed(signal, items);
                finalizers.settle(DeliveryStatus::Failed);
            }
            Outcome::Stopped(error) => {
                // Callers turn this into a give-up or leave the item on disk;
                // if one did not, the data is still reported as not delivered.
                tracing::error!(exporter = %self.id, error = %error.message, dropped_items = items, "Exporting stopped. Dropping data.");
                self.metrics.send_failed(signal, items);
                finalizers.settle(DeliveryStatus::Failed);
            }
        }
    }

    /// The backend failed during the shutdown drain: a queued request is
    /// failed without an attempt, so that the drain ends well inside the
    /// shutdown deadline instead of being aborted with the rest uncounted.
    /// Logged once for all of them by [`Core::log_drain_drops`].
    fn drop_in_drain(&self, payload: &Payload, finalizers: Finalizers) {
        let items = payload.item_count();
        self.metrics.send_failed(payload.signal(), items);
        self.drain_dropped_requests.fetch_add(1, Ordering::Relaxed);
        self.drain_dropped_items
            .fetch_add(u64::try_from(items).unwrap_or(u64::MAX), Ordering::Relaxed);
        finalizers.settle(DeliveryStatus::Failed);
    }

    fn log_drain_drops(&self) {
        let requests = self.drain_dropped_requests.swap(0, Ordering::Relaxed);
        let items = self.drain_dropped_items.swap(0, Ordering::Relaxed);
        if requests > 0 {
            tracing::error!(
                exporter = %self.id,
                dropped_requests = requests,
                dropped_items = items,
                "Exporting failed during shutdown. Dropping the rest of the sending queue without further attempts."
            );
        }
    }

    /// A full queue in non-blocking mode (or still full after the drain
    /// wait): counted, logged, refused.
    fn queue_full(
        &self,
        signal: Signal,
        items: usize,
        finalizers: Finalizers,
        capacity: usize,
    ) -> ConsumeError {
        self.metrics.enqueue_failed(signal, items);
        if let Some(suppressed) = self.log.allow("queue_full") {
            tracing::warn!(
                exporter = %self.id,
                %signal,
                dropped_items = items,
                queue_size = capacity,
                suppressed,
                "Sending queue is full. Dropping data."
            );
        }
        finalizers.settle(DeliveryStatus::Failed);
        ConsumeError::refused(format!("sending queue of exporter {} is full", self.id))
    }
}

impl Core {
    /// A request the persistent queue could not store (and will not wait
    /// for): counted, refused (the sender may offer it again). Failing
    /// writes themselves are logged once by the storage extension.
    fn queue_write_failed(
        &self,
        signal: Signal,
        items: usize,
        finalizers: Finalizers,
        error: &str,
    ) -> ConsumeError {
        self.metrics.enqueue_failed(signal, items);
        finalizers.settle(DeliveryStatus::Failed);
        if let Some(suppressed) = self.log.allow("queue_write") {
            tracing::warn!(exporter = %self.id, %error, refused_items = items, suppressed, "Cannot write to the persistent queue. Refusing data.");
        }
        ConsumeError::refused(format!("exporter {}: {error}", self.id))
    }
}

/// Rate limit per message kind.
#[derive(Default)]
struct LogLimiter {
    last: Mutex<HashMap<&'static str, (Instant, u64)>>,
}

impl LogLimiter {
    /// `Some(messages suppressed since the last one)` when `kind` may be
    /// logged now.
    fn allow(&self, kind: &'static str) -> Option<u64> {
        let now = Instant::now();
        let mut last = self
            .last
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        match last.get_mut(kind) {
            Some((at, suppressed)) if now.duration_since(*at) < LOG_INTERVAL => {
                *suppressed += 1;
                None
            }
            Some((at, suppressed)) => {
                *at = now;
                Some(std::mem::take(suppressed))
            }
            None => {
                last.insert(kind, (now, 0));
                Some(0)
            }
        }
    }
}

/// Exponential backoff with jitter, like the collector's (cenkalti/backoff):
/// the n-th wait is `initial * multiplier^n` capped at `max_interval`, then
/// spread uniformly over ±`randomization_factor`.
struct Backoff {
    current: Duration,
    max: Duration,
    multiplier: f64,
    randomization: f64,
}

impl Backoff {
    fn new(cfg: &RetryConfig) -> Self {
        Backoff {
            current: cfg.initial_interval.get(),
            max: cfg.max_interval.get(),
            multiplier: cfg.multiplier,
            randomization: cfg.randomization_factor,
        }
    }

    fn next_wait(&mut self) -> Duration {
        let base = self.current.as_secs_f64();
        let delta = self.randomization * base;
        let wait = base - delta + rand::random::<f64>() * 2.0 * delta;
        self.current = Duration::try_from_secs_f64(base * self.multiplier)
            .unwrap_or(self.max)
            .min(self.max);
        Duration::try_from_secs_f64(wait).unwrap_or(self.max)
    }
}

/// Waits for `fut` (room in the queue). Once shutdown has begun the wait is
/// bounded by [`DRAIN_ENQUEUE_WAIT`]; `None` when that passed.
async fn wait_for_room<F: std::future::Future>(
    shutdown: &CancellationToken,
    fut: F,
) -> Option<F::Output> {
    tokio::pin!(fut);
    tokio::select! {
        biased;
        out = &mut fut => return Some(out),
        _ = shutdown.cancelled() => {}
    }
    tokio::time::timeout(DRAIN_ENQUEUE_WAIT, fut).await.ok()
}

async fn join_workers(id: &ComponentId, mut workers: JoinSet<()>) {
    while let Some(joined) = workers.join_next().await {
        if let Err(e) = joined {
            // The request it held is dropped with its finalizers unsettled,
            // so it is reported as failed, not lost silently.
            tracing::error!(exporter = %id, error = %e, "an export worker panicked; its request is reported as failed");
        }
    }
}

/// Queue disabled: export inside `consume`.
struct DirectConsumer {
    core: Arc<Core>,
    /// Tells the task that the consumer is gone.
    _dropped: DropGuard,
}

#[async_trait]
impl Consumer for DirectConsumer {
    async fn consume(&self, batch: Batch) -> Result<(), ConsumeError> {
        if batch.item_count() == 0 {
            batch.finalizers.settle(DeliveryStatus::Delivered);
            return Ok(());
        }
        let started = Instant::now();
        let outcome = self
            .core
            .export_with_retry(&batch.payload, &self.core.shutdown)
            .await
            .stopped_gives_up();
        let result = match &outcome {
            Outcome::Sent(_) => Ok(()),
            Outcome::Rejected(e) => Err(ConsumeError::Permanent(e.message.clone())),
            Outcome::GaveUp { error, .. } | Outcome::Stopped(error) => Err(ConsumeError::Refused {
                reason: error.message.clone(),
                retry_after: error.retry_after,
            }),
        };
        self.core
            .finish(&batch.payload, batch.finalizers, &outcome, started);
        result
    }
}

/// A request in the in-memory queue.
struct Request {
    payload: Arc<Payload>,
    finalizers: Finalizers,
}

/// In-memory queue: a bounded MPMC channel of `queue_size` requests (requests
/// being exported do not count, like the collector's), read by
/// `num_consumers` workers. The channel closes when this consumer is dropped;
/// the workers then drain what is left and end.
struct MemoryQueueConsumer {
    core: Arc<Core>,
    tx: async_channel::Sender<Request>,
    block_on_overflow: bool,
}

#[async_trait]
impl Consumer for MemoryQueueConsumer {
    async fn consume(&self, batch: Batch) -> Result<(), ConsumeError> {
        let (signal, items) = (batch.signal(), batch.item_count());
        if items == 0 {
            batch.finalizers.settle(DeliveryStatus::Delivered);
            return Ok(());
        }
        let request = Request {
            payload: batch.payload,
            finalizers: batch.finalizers,
        };
        let request = match self.tx.try_send(request) {
            Ok(()) => {
                self.core.metrics.set_queue_size(self.tx.len());
                return Ok(());
            }
            Err(async_channel::TrySendError::Full(r)) => r,
            Err(async_channel::TrySendError::Closed(r)) => {
                r.finalizers.settle(DeliveryStatus::Failed);
                return Err(ConsumeError::Shutdown);
            }
        };
        let capacity = self.tx.capacity().unwrap_or(0);
        if !self.block_on_overflow {
            return Err(self
                .core
                .queue_full(signal, items, request.finalizers, capacity));
        }
        // If the wait is abandoned, the request is dropped inside the send
        // future: its unsettled finalizers report it as failed.
        match wait_for_room(&self.core.shutdown, self.tx.send(request)).await {
            Some(Ok(())) => {
                self.core.metrics.set_queue_size(self.tx.len());
                Ok(())
            }
            Some(Err(async_channel::SendError(r))) => {
                r.finalizers.settle(DeliveryStatus::Failed);
                Err(ConsumeError::Shutdown)
            }
            None => Err(self
                .core
                .queue_full(signal, items, Finalizers::default(), capacity)),
        }
    }
}

async fn memory_worker(core: Arc<Core>, rx: async_channel::Receiver<Request>) {
    while let Ok(request) = rx.recv().await {
        core.metrics.set_queue_size(rx.len());
        if core.shutdown.is_cancelled() && core.drain_failed.load(Ordering::Relaxed) {
            core.drop_in_drain(&request.payload, request.finalizers);
            continue;
        }
        let started = Instant::now();
        let outcome = core
            .export_with_retry(&request.payload, &core.shutdown)
            .await
            .stopped_gives_up();
        core.finish(&request.payload, request.finalizers, &outcome, started);
    }
}

/// The persistent queue's state shared by the consumer and the workers.
struct PersistentShared {
    disk: PersistentQueue,
    /// Free places: a push takes one; it comes back when the item leaves
    /// the queue (sent, rejected, skipped), not when a worker takes it, so
    /// the items on disk, taken or waiting, never exceed the capacity.
    room: Semaphore,
    /// Items found on disk beyond `queue_size` (the last run had a larger
    /// one): their places are not given back, so the bound is restored.
    debt: AtomicUsize,
    /// One permit per item waiting on disk.
    ready: Semaphore,
    capacity: usize,
}

impl PersistentShared {
    fn give_back_room(&self) {
        let paid_debt = self
            .debt
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |d| d.checked_sub(1))
            .is_ok();
        if !paid_debt {
            self.room.add_permits(1);
        }
    }
}

fn spawn_persistent(
    core: Arc<Core>,
    client: Arc<dyn ExportClient>,
    queue: &QueueConfig,
    disk: PersistentQueue,
) -> (DynConsumer, JoinHandle<()>) {
    let resumed = disk.len();
    let capacity = queue.queue_size.min(Semaphore::MAX_PERMITS);
    core.metrics.set_queue_size(resumed);
    let shared = Arc::new(PersistentShared {
        disk,
        room: Semaphore::new(capacity.saturating_sub(resumed)),
        debt: AtomicUsize::new(resumed.saturating_sub(capacity)),
        ready: Semaphore::new(resumed.min(Semaphore::MAX_PERMITS)),
        capacity,
    });
    // Workers stop at shutdown or when the consumer is dropped.
    let stop = core.shutdown.child_token();
    let dropped = CancellationToken::new();
    let mut workers = JoinSet::new();
    for _ in 0..queue.num_consumers {
        workers.spawn(persistent_worker(
            Arc::clone(&core),
            Arc::clone(&shared),
            stop.clone(),
        ));
    }
    let consumer = PersistentQueueConsumer {
        core: Arc::clone(&core),
        shared: Arc::clone(&shared),
        block_on_overflow: queue.block_on_overflow,
        _dropped: dropped.clone().drop_guard(),
    };
    let handle = tokio::spawn(async move {
        dropped.cancelled().await;
        stop.cancel();
        join_workers(&core.id, workers).await;
        client.shutdown().await;
        tracing::debug!(
            exporter = %core.id,
            left_on_disk = shared.disk.len(),
            "exporter stopped; the persistent queue resumes on the next start"
        );
    });
    (Arc::new(consumer), handle)
}

/// Persistent queue: `consume` returns once the request is on disk.
struct PersistentQueueConsumer {
    core: Arc<Core>,
    shared: Arc<PersistentShared>,
    block_on_overflow: bool,
    _dropped: DropGuard,
}

#[async_trait]
impl Consumer for PersistentQueueConsumer {
    async fn consume(&self, batch: Batch) -> Result<(), ConsumeError> {
        let (signal, items) = (batch.signal(), batch.item_count());
        if items == 0 {
            batch.finalizers.settle(DeliveryStatus::Delivered);
            return Ok(());
        }
        let capacity = self.shared.capacity;
        match self.shared.room.try_acquire() {
            Ok(place) => place.forget(),
            Err(TryAcquireError::Closed) => return Err(ConsumeError::Shutdown),
            Err(TryAcquireError::NoPermits) if !self.block_on_overflow => {
                return Err(self
                    .core
                    .queue_full(signal, items, batch.finalizers, capacity))
            }
            Err(TryAcquireError::NoPermits) => {
                match wait_for_room(&self.core.shutdown, self.shared.room.acquire()).await {
                    Some(Ok(place)) => place.forget(),
                    Some(Err(_closed)) => return Err(ConsumeError::Shutdown),
                    None => {
                        return Err(self
                            .core
                            .queue_full(signal, items, batch.finalizers, capacity))
                    }
                }
            }
        }
        // Holds the place taken above; gives it back unless the write worked.
        let mut place = Place {
            shared: Some(Arc::clone(&self.shared)),
        };
        let data = batch.payload;
        let mut finalizers = batch.finalizers;
        let mut wait = STORAGE_RETRY_MIN;
        let mut drain_deadline = None;
        loop {
            // An attempt runs to its end even if this future is dropped: the
            // request is then still queued and acknowledged (or, when the
            // write failed, its finalizers and place are dropped with the
            // result: reported as failed, place given back).
            let shared = Arc::clone(&self.shared);
            let payload = Arc::clone(&data);
            let written = tokio::task::spawn_blocking(move || {
                match shared.disk.push(&encode_request(&payload)) {
                    Ok(seq) => {
                        place.keep();
                        shared.ready.add_permits(1);
                        finalizers.settle(DeliveryStatus::Delivered);
                        Ok(seq)
                    }
                    Err(e) => Err((e, finalizers, place)),
                }
            })
            .await;
            self.core.metrics.set_queue_size(self.shared.disk.len());
            let (error, returned, kept) = match written {
                Ok(Ok(_seq)) => return Ok(()),
                Ok(Err(failed)) => failed,
                // Finalizers and place were dropped with the task.
                Err(e) => {
                    return Err(self.core.queue_write_failed(
                        signal,
                        items,
                        Finalizers::default(),
                        &format!("persistent queue write did not finish: {e}"),
                    ))
                }
            };
            (finalizers, place) = (returned, kept);
            let detail = format!("{error:#}");
            // Only a failed write (a full disk, above all) is worth waiting
            // for; anything else (an item too large to store) never works.
            if error.downcast_ref::<std::io::Error>().is_none() {
                drop(place);
                finalizers.settle(DeliveryStatus::Rejected);
                self.core.metrics.enqueue_failed(signal, items);
                tracing::error!(exporter = %self.core.id, error = %detail, dropped_items = items, "Cannot store the request in the persistent queue. Dropping data.");
                return Err(ConsumeError::Permanent(format!(
                    "exporter {}: {detail}",
                    self.core.id
                )));
            }
            // The storage extension logs that writes fail, once; the
            // pipeline waits (pushes back) like on a full queue.
            tracing::debug!(exporter = %self.core.id, error = %detail, "persistent queue write failed; waiting for the storage");
            if !self.block_on_overflow {
                drop(place);
                return Err(self
                    .core
                    .queue_write_failed(signal, items, finalizers, &detail));
            }
            if self.core.shutdown.is_cancelled() {
                let deadline =
                    *drain_deadline.get_or_insert_with(|| Instant::now() + DRAIN_ENQUEUE_WAIT);
                if Instant::now() >= deadline {
                    drop(place);
                    return Err(self
                        .core
                        .queue_write_failed(signal, items, finalizers, &detail));
                }
            }
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                // Shutdown starts the bounded drain wait at once.
                () = self.core.shutdown.cancelled(), if drain_deadline.is_none() => {}
            }
            wait = (wait * 2).min(STORAGE_RETRY_MAX);
        }
    }
}

/// A place in the persistent queue's capacity, given back when dropped
/// unless [`Place::keep`] was called (the item was written).
struct Place {
    shared: Option<Arc<PersistentShared>>,
}

impl Place {
    fn keep(mut self) {
        self.shared = None;
    }
}

impl Drop for Place {
    fn drop(&mut self) {
        if let Some(shared) = self.shared.take() {
            shared.give_back_room();
        }
    }
}

async fn persistent_worker(
    core: Arc<Core>,
    shared: Arc<PersistentShared>,
    stop: CancellationToken,
) {
    loop {
        let ready = tokio::select! {
            biased;
            _ = stop.cancelled() => break,
            ready = shared.ready.acquire() => ready,
        };
        match ready {
            Ok(permit) => permit.forget(),
            Err(_closed) => break,
        }
        // `ready` counts waiting items, so something is there.
        let Some(popped) = take_item(&core, &shared, PersistentQueue::pop).await else {
            continue;
        };
        core.metrics.set_queue_size(shared.disk.len());
        // A taken item keeps its place until it leaves the queue, so that an
        // item put back after a failed export does not push the queue past
        // its capacity.
        let item = match popped {
            Popped::Item(item) => item,
            Popped::Skipped => {
                shared.give_back_room();
                continue;
            }
        };
        let payload = match decode_request(&item.data) {
            Ok(payload) => payload,
            Err(reason) => {
                tracing::warn!(exporter = %core.id, file = %shared.disk.item_path(item.seq).display(), %reason, "skipping an undecodable persistent queue item");
                remove_item(&core, &shared, item.seq).await;
                continue;
            }
        };
        let payload = Arc::new(payload);
        let started = Instant::now();
        let outcome = core.export_with_retry(&payload, &stop).await;
        if let Outcome::Stopped(error) = &outcome {
            tracing::debug!(exporter = %core.id, seq = item.seq, error = %error.message, "export interrupted by shutdown; the item stays queued");
            shared.disk.release(item.seq);
            shared.ready.add_permits(1);
            continue;
        }
        if let Outcome::GaveUp { error, why } = &outcome {
            // Acknowledged as durable when it was written: a retryable
            // failure must not delete it. It goes back to the queue and is
            // tried again after a pause; only a permanent rejection (or an
            // undecodable item) deletes an item.
            let pause = requeue_pause(&core.retry);
            if let Some(suppressed) = core.log.allow("requeue") {
                tracing::warn!(
                    exporter = %core.id,
                    error = %error.message,
                    reason = why,
                    seq = item.seq,
                    retry_in = ?pause,
                    suppressed,
                    "Exporting failed. The request stays in the persistent queue and will be retried."
                );
            }
            core.metrics.export_latency(started.elapsed());
            tokio::select! {
                _ = tokio::time::sleep(pause) => {}
                _ = stop.cancelled() => {}
            }
            shared.disk.release(item.seq);
            shared.ready.add_permits(1);
            continue;
        }
        // Acknowledged when it was written; what is left is accounting.
        core.finish(&payload, Finalizers::default(), &outcome, started);
        remove_item(&core, &shared, item.seq).await;
    }
}

/// How long a persistent queue item whose retries ran out waits before it is
/// tried again: the longest backoff wait (at least [`MIN_REQUEUE_PAUSE`], so
/// that a disabled or tiny retry configuration does not spin).
fn requeue_pause(retry: &RetryConfig) -> Duration {
    retry.max_interval.get().max(MIN_REQUEUE_PAUSE)
}

/// Takes the next item off the disk (blocking I/O, on a blocking thread).
/// The caller holds a `ready` permit for it: if the read task fails (panics),
/// the permit is given back, so that the item is not stranded.
async fn take_item(
    core: &Core,
    shared: &Arc<PersistentShared>,
    pop: fn(&PersistentQueue) -> Option<Popped>,
) -> Option<Popped> {
    let taking = Arc::clone(shared);
    match tokio::task::spawn_blocking(move || pop(&taking.disk)).await {
        Ok(popped) => popped,
        Err(e) => {
            tracing::error!(exporter = %core.id, error = %e, "reading the persistent queue failed");
            shared.ready.add_permits(1);
            None
        }
    }
}

/// Deletes a finished item and gives its place back (an item whose file
/// could not be deleted is no longer tracked either: it is sent again after
/// a restart).
async fn remove_item(core: &Core, shared: &Arc<PersistentShared>, seq: u64) {
    let removing = Arc::clone(shared);
    let removed = tokio::task::spawn_blocking(move || removing.disk.remove(seq)).await;
    shared.give_back_room();
    let error = match removed {
        Ok(Ok(())) => return,
        Ok(Err(e)) => format!("{e:#}"),
        Err(e) => e.to_string(),
    };
    // Not a loss: the item is sent again after a restart.
    tracing::warn!(exporter = %core.id, seq, %error, "cannot delete a finished persistent queue item");
}

/// Tag byte of a queued request, followed by the signal's OTLP
/// `Export*ServiceRequest` in protobuf.
const TAG_LOGS: u8 = 1;
const TAG_METRICS: u8 = 2;

/// The on-disk form of a request (public for the fuzz targets, `fuzz/`).
#[doc(hidden)]
pub fn encode_request(payload: &Payload) -> Vec<u8> {
    // Encoded as the repeated field 1 of the service request, without first
    // copying the resources into one.
    fn encode_all<M: prost::Message>(tag: u8, resources: &[M]) -> Vec<u8> {
        let len: usize = resources
            .iter()
            .map(|r| prost::encoding::message::encoded_len(1, r))
            .sum();
        let mut buf = Vec::with_capacity(1 + len);
        buf.push(tag);
        for r in resources {
            prost::encoding::message::encode(1, r, &mut buf);
        }
        buf
    }
    match payload {
        Payload::Logs(rl) => encode_all(TAG_LOGS, rl),
        Payload::Metrics(rm) => encode_all(TAG_METRICS, rm),
    }
}

/// A request from its on-disk form (public for the fuzz targets, `fuzz/`).
#[doc(hidden)]
pub fn decode_request(bytes: &[u8]) -> Result<Payload, String> {
    let (tag, body) = bytes.split_first().ok_or("empty item")?;
    match *tag {
        TAG_LOGS => ExportLogsServiceRequest::decode(body)
            .map(|r| Payload::Logs(r.resource_logs))
            .map_err(|e| format!("invalid logs request: {e}")),
        TAG_METRICS => ExportMetricsServiceRequest::decode(body)
            .map(|r| Payload::Metrics(r.resource_metrics))
            .map_err(|e| format!("invalid metrics request: {e}")),
        other => Err(format!("unknown signal tag {other}")),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, VecDeque};
    use std::path::Path;

    use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue};
    use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
    use opentelemetry_proto::tonic::metrics::v1::{
        metric, Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics,
    };
    use tokio::sync::watch;

    use super::*;
    use crate::extensions::file_storage::{FileStorage, FileStorageConfig};
    use crate::extensions::Extensions;
    use crate::pipeline::{BatchNotifier, BatchStatusReceiver};
    use crate::telemetry::Telemetry;

    /// Generous bound so that a broken test fails instead of hanging; with
    /// paused time it costs nothing.
    const HANG: Duration = Duration::from_secs(600);

    enum Step {
        Reply(Result<ExportResponse, ExportError>),
        /// Takes this long, then succeeds.
        Slow(Duration),
    }

    /// An [`ExportClient`] that plays a script, then `otherwise`.
    struct ScriptedClient {
        script: Mutex<VecDeque<Step>>,
        otherwise: Option<ExportError>,
        /// When set, every call waits for a permit first (a blocked backend).
        gate: Option<Arc<Semaphore>>,
        calls: Mutex<Vec<(Instant, Payload)>>,
        call_count: watch::Sender<usize>,
        shut_down: AtomicBool,
    }

    impl ScriptedClient {
        fn new(
            script: Vec<Step>,
            otherwise: Option<ExportError>,
            gate: Option<Arc<Semaphore>>,
        ) -> Arc<Self> {
            Arc::new(ScriptedClient {
                script: Mutex::new(script.into()),
                otherwise,
                gate,
                calls: Mutex::new(Vec::new()),
                call_count: watch::Sender::new(0),
                shut_down: AtomicBool::new(false),
            })
        }

        fn ok() -> Arc<Self> {
            Self::new(Vec::new(), None, None)
        }

        fn calls(&self) -> Vec<(Instant, Payload)> {
            self.calls.lock().unwrap_or_else(|p| p.into_inner()).clone()
        }

        fn markers(&self) -> Vec<String> {
            self.calls().iter().map(|(_, p)| marker(p)).collect()
        }

        async fn wait_calls(&self, n: usize) {
            let mut rx = self.call_count.subscribe();
            let reached = tokio::time::timeout(HANG, rx.wait_for(|c| *c >= n)).await;
            assert!(
                matches!(reached, Ok(Ok(_))),
                "expected {n} export calls, got {}",
                self.calls().len()
            );
        }
    }

    #[async_trait]
    impl ExportClient for ScriptedClient {
        async fn export(&self, payload: &Arc<Payload>) -> Result<ExportResponse, ExportError> {
            let payload: &Payload = payload;
            self.calls
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push((Instant::now(), payload.clone()));
            self.call_count.send_modify(|c| *c += 1);
            if let Some(gate) = &self.gate {
                if let Ok(permit) = gate.acquire().await {
                    permit.forget();
                }
            }
            let step = self
                .script
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .pop_front();
            match step {
                Some(Step::Reply(r)) => r,
                Some(Step::Slow(d)) => {
                    tokio::time::sleep(d).await;
                    Ok(ExportResponse::default())
                }
                None => match &self.otherwise {
                    Some(e) => Err(e.clone()),
                    None => Ok(ExportResponse::default()),
                },
            }
        }

        async fn shutdown(&self) {
            self.shut_down.store(true, Ordering::SeqCst);
        }
    }

    fn log_payload(marker: &str) -> Payload {
        let record = LogRecord {
            body: Some(AnyValue {
                value: Some(any_value::Value::StringValue(marker.to_string())),
            }),
            ..Default::default()
        };
        Payload::Logs(vec![ResourceLogs {
            scope_logs: vec![ScopeLogs {
                log_records: vec![record.clone(), record],
                ..Default::default()
            }],
            ..Default::default()
        }])
    }

    fn marker(p: &Payload) -> String {
        let body = match p {
            Payload::Logs(rl) => rl
                .first()
                .and_then(|r| r.scope_logs.first())
                .and_then(|s| s.log_records.first())
                .and_then(|l| l.body.clone()),
            Payload::Metrics(_) => None,
        };
        match body.and_then(|b| b.value) {
            Some(any_value::Value::StringValue(s)) => s,
            _ => String::new(),
        }
    }

    fn batch(marker: &str) -> (Batch, BatchStatusReceiver) {
        let (finalizer, status) = BatchNotifier::new_pair();
        (
            Batch::new(log_payload(marker)).with_finalizers(Finalizers::new(finalizer)),
            status,
        )
    }

    async fn status(rx: BatchStatusReceiver) -> DeliveryStatus {
        match tokio::time::timeout(HANG, rx).await {
            Ok(Ok(s)) => s,
            other => panic!("no delivery status: {other:?}"),
        }
    }

    fn storage_id() -> ComponentId {
        ComponentId::new("file_storage", Some("queue"))
    }

    fn context(storage_dir: Option<&Path>) -> BuildContext {
        let mut storages = BTreeMap::new();
        if let Some(dir) = storage_dir {
            let cfg = FileStorageConfig {
                directory: dir.to_path_buf(),
                ..FileStorageConfig::default()
            };
            let storage =
                FileStorage::open(&cfg, &storage_id()).unwrap_or_else(|e| panic!("{e:#}"));
            storages.insert(storage_id(), storage);
        }
        BuildContext {
            id: ComponentId::new("otlp", Some("backend")),
            telemetry: Telemetry::noop(),
            extensions: Arc::new(Extensions {
                storages,
                ..Extensions::default()
            }),
            shutdown: CancellationToken::new(),
        }
    }

    fn settings(queue: QueueConfig) -> ExporterSettings {
        ExporterSettings {
            timeout: Some(Duration::from_secs(5)),
            retry: RetryConfig {
                initial_interval: GoDuration::from_millis(10),
                max_interval: GoDuration::from_millis(50),
                max_elapsed_time: GoDuration::from_secs(60),
                ..RetryConfig::default()
            },
            queue,
        }
    }

    /// For a gated (blocked) client: no per-attempt timeout, so the blocked
    /// attempt stays one attempt however far paused time moves.
    fn untimed(queue: QueueConfig) -> ExporterSettings {
        ExporterSettings {
            timeout: None,
            ..settings(queue)
        }
    }

    fn memory_queue(num_consumers: usize, queue_size: usize) -> QueueConfig {
        QueueConfig {
            num_consumers,
            queue_size,
            ..QueueConfig::default()
        }
    }

    fn persistent_queue(num_consumers: usize, queue_size: usize) -> QueueConfig {
        QueueConfig {
            storage: Some(storage_id()),
            ..memory_queue(num_consumers, queue_size)
        }
    }

    async fn start(
        ctx: &BuildContext,
        settings: ExporterSettings,
        client: &Arc<ScriptedClient>,
    ) -> (DynConsumer, JoinHandle<()>) {
        let client: Arc<dyn ExportClient> = client.clone();
        spawn(ctx, settings, client)
            .await
            .unwrap_or_else(|e| panic!("spawn: {e:#}"))
    }

    async fn consume(consumer: &DynConsumer, marker: &str) -> BatchStatusReceiver {
        let (b, rx) = batch(marker);
        let consumed = tokio::time::timeout(HANG, consumer.consume(b)).await;
        assert!(
            matches!(consumed, Ok(Ok(()))),
            "consume {marker}: {consumed:?}"
        );
        rx
    }

    async fn stop(consumer: DynConsumer, handle: JoinHandle<()>) {
        drop(consumer);
        let joined = tokio::time::timeout(HANG, handle).await;
        assert!(
            matches!(joined, Ok(Ok(()))),
            "exporter task did not end: {joined:?}"
        );
    }

    fn retryable_after(after: Duration) -> ExportError {
        ExportError {
            retry_after: Some(after),
            ..ExportError::retryable("throttled")
        }
    }

    #[tokio::test(start_paused = true)]
    async fn success_settles_delivered_and_shuts_the_client_down() {
        let ctx = context(None);
        let client = ScriptedClient::ok();
        let (consumer, handle) = start(&ctx, settings(QueueConfig::default()), &client).await;
        let rx = consume(&consumer, "a").await;
        assert_eq!(status(rx).await, DeliveryStatus::Delivered);
        stop(consumer, handle).await;
        assert_eq!(client.calls().len(), 1);
        assert_eq!(client.calls()[0].1, log_payload("a"));
        assert!(client.shut_down.load(Ordering::SeqCst));
    }

    #[tokio::test(start_paused = true)]
    async fn retries_then_succeeds() {
        let ctx = context(None);
        let script = vec![
            Step::Reply(Err(ExportError::retryable("unavailable"))),
            Step::Reply(Err(ExportError::retryable("unavailable"))),
        ];
        let client = ScriptedClient::new(script, None, None);
        let (consumer, handle) = start(&ctx, settings(QueueConfig::default()), &client).await;
        let rx = consume(&consumer, "a").await;
        assert_eq!(status(rx).await, DeliveryStatus::Delivered);
        assert_eq!(client.calls().len(), 3);
        stop(consumer, handle).await;
    }

    #[tokio::test(start_paused = true)]
    async fn permanent_error_is_rejected_and_not_retried() {
        let ctx = context(None);
        let client = ScriptedClient::new(
            Vec::new(),
            Some(ExportError::permanent("bad request")),
            None,
        );
        let (consumer, handle) = start(&ctx, settings(QueueConfig::default()), &client).await;
        let rx = consume(&consumer, "a").await;
        assert_eq!(status(rx).await, DeliveryStatus::Rejected);
        stop(consumer, handle).await;
        assert_eq!(client.calls().len(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn partial_success_is_delivered_and_not_retried() {
        let ctx = context(None);
        let partial = ExportResponse {
            rejected: 1,
            message: "one record too old".into(),
        };
        let client = ScriptedClient::new(
            vec![Step::Reply(Ok(partial))],
            Some(ExportError::permanent("must not be called")),
            None,
        );
        let (consumer, handle) = start(&ctx, settings(QueueConfig::default()), &client).await;
        let rx = consume(&consumer, "a").await;
        assert_eq!(status(rx).await, DeliveryStatus::Delivered);
        stop(consumer, handle).await;
        assert_eq!(client.calls().len(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn retry_after_hint_is_the_minimum_wait() {
        let ctx = context(None);
        let hint = Duration::from_secs(3);
        let script = vec![
            Step::Reply(Err(retryable_after(hint))),
            Step::Reply(Err(retryable_after(hint))),
        ];
        let client = ScriptedClient::new(script, None, None);
        // Backoff alone waits at most 150 ms: only the hint explains 3 s.
        let mut s = settings(QueueConfig::default());
        s.retry.initial_interval = GoDuration::from_millis(100);
        s.retry.max_interval = GoDuration::from_millis(100);
        let (consumer, handle) = start(&ctx, s, &client).await;
        let rx = consume(&consumer, "a").await;
        assert_eq!(status(rx).await, DeliveryStatus::Delivered);
        let times: Vec<Instant> = client.calls().iter().map(|(t, _)| *t).collect();
        assert_eq!(times.len(), 3);
        for pair in times.windows(2) {
            assert!(
                pair[1] - pair[0] >= hint,
                "retried after {:?}, hint was {hint:?}",
                pair[1] - pair[0]
            );
        }
        stop(consumer, handle).await;
    }

    /// A hint longer than what is left of max_elapsed_time: wait what is
    /// left, then a last attempt (not an immediate give-up).
    #[tokio::test(start_paused = true)]
    async fn a_hint_beyond_the_budget_waits_the_rest_then_tries_once_more() {
        let ctx = context(None);
        let script = vec![Step::Reply(Err(retryable_after(Duration::from_secs(30))))];
        let client = ScriptedClient::new(script, None, None);
        let mut s = settings(QueueConfig::default());
        s.retry.max_elapsed_time = GoDuration::from_secs(10);
        let (consumer, handle) = start(&ctx, s, &client).await;
        let rx = consume(&consumer, "a").await;
        assert_eq!(status(rx).await, DeliveryStatus::Delivered);
        let times: Vec<Instant> = client.calls().iter().map(|(t, _)| *t).collect();
        assert_eq!(times.len(), 2);
        let gap = times[1] - times[0];
        assert!(
            gap <= Duration::from_secs(10) && gap >= Duration::from_secs(9),
            "last attempt after {gap:?}"
        );

        // And when that last attempt fails too, the request is given up.
        let script = vec![
            Step::Reply(Err(retryable_after(Duration::from_secs(30)))),
            Step::Reply(Err(retryable_after(Duration::from_secs(30)))),
        ];
        let client = ScriptedClient::new(script, None, None);
        let mut s = settings(QueueConfig::default());
        s.retry.max_elapsed_time = GoDuration::from_secs(10);
        let (consumer2, handle2) = start(&ctx, s, &client).await;
        let rx = consume(&consumer2, "b").await;
        assert_eq!(status(rx).await, DeliveryStatus::Failed);
        assert_eq!(client.calls().len(), 2);
        stop(consumer, handle).await;
        stop(consumer2, handle2).await;
    }

    #[tokio::test(start_paused = true)]
    async fn backoff_grows_and_is_capped() {
        let ctx = context(None);
        let client = ScriptedClient::new(Vec::new(), Some(ExportError::retryable("down")), None);
        let mut s = settings(QueueConfig::default());
        s.retry = RetryConfig {
            initial_interval: GoDuration::from_secs(1),
            max_interval: GoDuration::from_secs(4),
            max_elapsed_time: GoDuration::from_secs(30),
            multiplier: 2.0,
            randomization_factor: 0.5,
            enabled: true,
        };
        let (consumer, handle) = start(&ctx, s, &client).await;
        let rx = consume(&consumer, "a").await;
        assert_eq!(status(rx).await, DeliveryStatus::Failed);
        let times: Vec<Instant> = client.calls().iter().map(|(t, _)| *t).collect();
        let gaps: Vec<Duration> = times.windows(2).map(|p| p[1] - p[0]).collect();
        // Base waits 1, 2, 4, 4, ... s, each within ±50 %.
        let bases = [1.0, 2.0, 4.0];
        for (i, gap) in gaps.iter().enumerate() {
            let base = bases.get(i).copied().unwrap_or(4.0);
            let g = gap.as_secs_f64();
            assert!(
                g >= base * 0.5 - 1e-6 && g <= base * 1.5 + 1e-6,
                "wait {i} was {g}s, base {base}s"
            );
        }
        assert!(times[times.len() - 1] - times[0] <= Duration::from_secs(30));
        stop(consumer, handle).await;
    }

    #[tokio::test(start_paused = true)]
    async fn gives_up_after_max_elapsed_time() {
        let ctx = context(None);
        let client = ScriptedClient::new(Vec::new(), Some(ExportError::retryable("down")), None);
        let mut s = settings(QueueConfig::default());
        s.retry.max_elapsed_time = GoDuration::from_secs(1);
        let (consumer, handle) = start(&ctx, s, &client).await;
        let rx = consume(&consumer, "a").await;
        assert_eq!(status(rx).await, DeliveryStatus::Failed);
        let calls = client.calls();
        assert!(calls.len() > 2, "retried: {}", calls.len());
        assert!(calls[calls.len() - 1].0 - calls[0].0 <= Duration::from_secs(1));
        stop(consumer, handle).await;
    }

    #[tokio::test(start_paused = true)]
    async fn a_slow_attempt_times_out_and_is_retried() {
        let ctx = context(None);
        let client = ScriptedClient::new(vec![Step::Slow(Duration::from_secs(60))], None, None);
        let mut s = settings(QueueConfig::default());
        s.timeout = Some(Duration::from_secs(1));
        let (consumer, handle) = start(&ctx, s, &client).await;
        let rx = consume(&consumer, "a").await;
        assert_eq!(status(rx).await, DeliveryStatus::Delivered);
        let calls = client.calls();
        assert_eq!(calls.len(), 2);
        assert!(
            calls[1].0 - calls[0].0 < Duration::from_secs(60),
            "the slow attempt was not cut short"
        );
        stop(consumer, handle).await;
    }

    #[tokio::test(start_paused = true)]
    async fn retry_disabled_gives_up_after_one_attempt() {
        let ctx = context(None);
        let client = ScriptedClient::new(Vec::new(), Some(ExportError::retryable("down")), None);
        let mut s = settings(QueueConfig::default());
        s.retry = RetryConfig::disabled();
        let (consumer, handle) = start(&ctx, s, &client).await;
        let rx = consume(&consumer, "a").await;
        assert_eq!(status(rx).await, DeliveryStatus::Failed);
        stop(consumer, handle).await;
        assert_eq!(client.calls().len(), 1);
    }

    /// One worker, `queue_size` 2: the first request is taken by the worker
    /// (in flight requests do not count, as in the collector), two wait in
    /// the queue, the next consume waits for room.
    #[tokio::test(start_paused = true)]
    async fn full_queue_blocks_until_room() {
        let ctx = context(None);
        let gate = Arc::new(Semaphore::new(0));
        let client = ScriptedClient::new(Vec::new(), None, Some(Arc::clone(&gate)));
        let (consumer, handle) = start(&ctx, untimed(memory_queue(1, 2)), &client).await;
        let first = consume(&consumer, "1").await;
        client.wait_calls(1).await;
        let queued = [consume(&consumer, "2").await, consume(&consumer, "3").await];

        let (b, fourth) = batch("4");
        let mut blocked = consumer.consume(b);
        assert!(
            tokio::time::timeout(Duration::from_secs(30), &mut blocked)
                .await
                .is_err(),
            "a consume into a full queue must wait"
        );
        gate.add_permits(100);
        let consumed = tokio::time::timeout(HANG, &mut blocked).await;
        assert!(matches!(consumed, Ok(Ok(()))), "{consumed:?}");
        drop(blocked);
        assert_eq!(status(first).await, DeliveryStatus::Delivered);
        for rx in queued {
            assert_eq!(status(rx).await, DeliveryStatus::Delivered);
        }
        assert_eq!(status(fourth).await, DeliveryStatus::Delivered);
        stop(consumer, handle).await;
        assert_eq!(client.markers(), ["1", "2", "3", "4"]);
    }

    #[tokio::test(start_paused = true)]
    async fn full_queue_refuses_when_not_blocking() {
        let ctx = context(None);
        let gate = Arc::new(Semaphore::new(0));
        let client = ScriptedClient::new(Vec::new(), None, Some(Arc::clone(&gate)));
        let queue = QueueConfig {
            block_on_overflow: false,
            ..memory_queue(1, 1)
        };
        let (consumer, handle) = start(&ctx, untimed(queue), &client).await;
        let first = consume(&consumer, "1").await;
        client.wait_calls(1).await;
        let second = consume(&consumer, "2").await;
        let (b, third) = batch("3");
        let refused = consumer.consume(b).await;
        assert!(
            matches!(refused, Err(ConsumeError::Refused { .. })),
            "{refused:?}"
        );
        assert_eq!(status(third).await, DeliveryStatus::Failed);
        gate.add_permits(100);
        assert_eq!(status(first).await, DeliveryStatus::Delivered);
        assert_eq!(status(second).await, DeliveryStatus::Delivered);
        stop(consumer, handle).await;
    }

    #[tokio::test(start_paused = true)]
    async fn drain_delivers_what_was_queued() {
        let ctx = context(None);
        let gate = Arc::new(Semaphore::new(0));
        let client = ScriptedClient::new(Vec::new(), None, Some(Arc::clone(&gate)));
        let (consumer, handle) = start(&ctx, untimed(memory_queue(1, 10)), &client).await;
        let mut statuses = Vec::new();
        for i in 0..5 {
            statuses.push(consume(&consumer, &i.to_string()).await);
        }
        ctx.shutdown.cancel();
        drop(consumer);
        gate.add_permits(100);
        let joined = tokio::time::timeout(HANG, handle).await;
        assert!(matches!(joined, Ok(Ok(()))));
        for rx in statuses {
            assert_eq!(status(rx).await, DeliveryStatus::Delivered);
        }
        assert_eq!(client.markers(), ["0", "1", "2", "3", "4"]);
        assert!(client.shut_down.load(Ordering::SeqCst));
    }

    #[tokio::test(start_paused = true)]
    async fn drain_against_a_dead_backend_ends_and_reports_failure() {
        let ctx = context(None);
        let client = ScriptedClient::new(Vec::new(), Some(ExportError::retryable("down")), None);
        let mut s = settings(memory_queue(1, 10));
        s.retry.max_elapsed_time = GoDuration::ZERO; // forever, but for shutdown
        let (consumer, handle) = start(&ctx, s, &client).await;
        let mut statuses = Vec::new();
        for i in 0..3 {
            statuses.push(consume(&consumer, &i.to_string()).await);
        }
        client.wait_calls(5).await;
        ctx.shutdown.cancel();
        stop(consumer, handle).await;
        for rx in statuses {
            assert_eq!(status(rx).await, DeliveryStatus::Failed);
        }
        // "0" was waiting to retry: given up. "1" got one attempt during the
        // drain; it failed, so "2" was failed without one.
        let markers = client.markers();
        assert_eq!(
            markers.iter().filter(|m| *m == "1").count(),
            1,
            "{markers:?}"
        );
        assert_eq!(
            markers.iter().filter(|m| *m == "2").count(),
            0,
            "{markers:?}"
        );
    }

    /// A dead backend with a long per-attempt timeout: once an attempt has
    /// failed during the drain, the rest of the queue is failed without
    /// attempts, so the drain ends after about one timeout, not one per
    /// request.
    #[tokio::test(start_paused = true)]
    async fn drain_stops_attempting_after_the_first_failure() {
        let ctx = context(None);
        // Every attempt hangs until the 30 s per-attempt timeout.
        let gate = Arc::new(Semaphore::new(0));
        let client = ScriptedClient::new(Vec::new(), None, Some(gate));
        let mut s = settings(memory_queue(1, 100));
        s.timeout = Some(Duration::from_secs(30));
        s.retry.max_elapsed_time = GoDuration::ZERO;
        let (consumer, handle) = start(&ctx, s, &client).await;
        let mut statuses = Vec::new();
        for i in 0..20 {
            statuses.push(consume(&consumer, &i.to_string()).await);
        }
        client.wait_calls(1).await;
        let began = Instant::now();
        ctx.shutdown.cancel();
        stop(consumer, handle).await;
        let drain = began.elapsed();
        assert!(
            drain <= Duration::from_secs(31),
            "the drain took {drain:?} (paused time)"
        );
        for rx in statuses {
            assert_eq!(status(rx).await, DeliveryStatus::Failed);
        }
        assert_eq!(client.calls().len(), 1, "no attempt after the failure");
    }

    #[tokio::test(start_paused = true)]
    async fn blocked_consume_is_refused_after_the_drain_wait() {
        let ctx = context(None);
        let gate = Arc::new(Semaphore::new(0));
        let client = ScriptedClient::new(Vec::new(), None, Some(Arc::clone(&gate)));
        let (consumer, handle) = start(&ctx, untimed(memory_queue(1, 1)), &client).await;
        let first = consume(&consumer, "1").await;
        client.wait_calls(1).await;
        let second = consume(&consumer, "2").await;
        ctx.shutdown.cancel();
        let (b, third) = batch("3");
        let refused = tokio::time::timeout(HANG, consumer.consume(b)).await;
        assert!(
            matches!(refused, Ok(Err(ConsumeError::Refused { .. }))),
            "{refused:?}"
        );
        assert_eq!(status(third).await, DeliveryStatus::Failed);
        gate.add_permits(100);
        stop(consumer, handle).await;
        assert_eq!(status(first).await, DeliveryStatus::Delivered);
        assert_eq!(status(second).await, DeliveryStatus::Delivered);
    }

    #[tokio::test(start_paused = true)]
    async fn queue_disabled_exports_inside_consume() {
        let ctx = context(None);
        let script = vec![
            Step::Reply(Err(ExportError::retryable("blip"))),
            Step::Reply(Ok(ExportResponse::default())),
            Step::Reply(Err(ExportError::permanent("bad request"))),
        ];
        let client = ScriptedClient::new(script, None, None);
        let queue = QueueConfig {
            enabled: false,
            ..QueueConfig::default()
        };
        let (consumer, handle) = start(&ctx, settings(queue), &client).await;
        let (b, ok) = batch("a");
        assert_eq!(consumer.consume(b).await, Ok(()));
        assert_eq!(client.calls().len(), 2, "exported before consume returned");
        assert_eq!(status(ok).await, DeliveryStatus::Delivered);
        let (b, rejected) = batch("b");
        assert!(matches!(
            consumer.consume(b).await,
            Err(ConsumeError::Permanent(_))
        ));
        assert_eq!(status(rejected).await, DeliveryStatus::Rejected);
        stop(consumer, handle).await;
        assert!(client.shut_down.load(Ordering::SeqCst));
    }

    #[tokio::test]
    async fn unknown_storage_is_a_clear_error() {
        let ctx = context(None);
        let client: Arc<dyn ExportClient> = ScriptedClient::ok();
        let err = spawn(&ctx, settings(persistent_queue(1, 10)), client)
            .await
            .err();
        let msg = format!("{:#}", err.unwrap_or_else(|| panic!("must fail")));
        assert!(
            msg.contains("otlp/backend") && msg.contains("file_storage/queue"),
            "{msg}"
        );
    }

    fn queue_files(dir: &Path) -> Vec<String> {
        let q = dir.join("exporter_otlp_backend/queue");
        let mut names: Vec<String> = std::fs::read_dir(&q)
            .unwrap_or_else(|e| panic!("{}: {e}", q.display()))
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|n| n.ends_with(".item"))
            .collect();
        names.sort();
        names
    }

    /// Real-time tests (the persistent queue does its file I/O on blocking
    /// threads, which paused time does not suit) are bounded as a whole, so
    /// that a broken one fails within a minute.
    async fn bounded(test: impl std::future::Future<Output = ()>) {
        let finished = tokio::time::timeout(Duration::from_secs(60), test).await;
        assert!(finished.is_ok(), "test did not finish within 60 s");
    }

    /// Real time: the persistent queue does its file I/O on blocking threads.
    #[tokio::test]
    async fn persistent_queue_survives_a_restart_in_order() {
        bounded(async {
            let tmp = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));

            // First run: the backend is down; everything is acknowledged once on disk.
            let ctx = context(Some(tmp.path()));
            let down = ScriptedClient::new(Vec::new(), Some(ExportError::retryable("down")), None);
            let (consumer, handle) = start(&ctx, settings(persistent_queue(1, 10)), &down).await;
            for m in ["a", "b", "c"] {
                let rx = consume(&consumer, m).await;
                assert_eq!(
                    status(rx).await,
                    DeliveryStatus::Delivered,
                    "durably queued"
                );
            }
            down.wait_calls(2).await;
            ctx.shutdown.cancel();
            stop(consumer, handle).await;
            drop(ctx);
            assert_eq!(
                queue_files(tmp.path()).len(),
                3,
                "all three stay on disk, the interrupted one too"
            );

            // Second run (as after kill -9 and restart): resumed, in order, then removed.
            let ctx = context(Some(tmp.path()));
            let up = ScriptedClient::ok();
            let (consumer, handle) = start(&ctx, settings(persistent_queue(1, 10)), &up).await;
            up.wait_calls(3).await;
            let rx = consume(&consumer, "d").await;
            assert_eq!(status(rx).await, DeliveryStatus::Delivered);
            up.wait_calls(4).await;
            let emptied = tokio::time::timeout(HANG, async {
                while !queue_files(tmp.path()).is_empty() {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            })
            .await;
            assert!(emptied.is_ok(), "left: {:?}", queue_files(tmp.path()));
            stop(consumer, handle).await;
            assert_eq!(up.markers(), ["a", "b", "c", "d"]);
            assert_eq!(up.calls()[0].1, log_payload("a"));
        })
        .await;
    }

    /// Retries running out must not delete a durably queued item: it goes
    /// back to the queue and is sent once the backend is back. A permanent
    /// rejection deletes it.
    #[tokio::test]
    async fn persistent_queue_keeps_an_item_whose_retries_ran_out() {
        bounded(async {
            let tmp = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
            let ctx = context(Some(tmp.path()));
            // More failures than one retry cycle of 100 ms can use up.
            let mut script: Vec<Step> = (0..10)
                .map(|_| Step::Reply(Err(ExportError::retryable("down"))))
                .collect();
            script.push(Step::Reply(Ok(ExportResponse::default())));
            script.push(Step::Reply(Err(ExportError::permanent("bad request"))));
            let client = ScriptedClient::new(script, None, None);
            let mut s = settings(persistent_queue(1, 10));
            s.retry.max_elapsed_time = GoDuration::from_millis(100);
            let (consumer, handle) = start(&ctx, s, &client).await;
            drop(consume(&consumer, "a").await);
            client.wait_calls(11).await;
            drop(consume(&consumer, "b").await);
            client.wait_calls(12).await;
            let emptied = tokio::time::timeout(HANG, async {
                while !queue_files(tmp.path()).is_empty() {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            })
            .await;
            assert!(emptied.is_ok(), "left: {:?}", queue_files(tmp.path()));
            stop(consumer, handle).await;
            let markers = client.markers();
            assert_eq!(markers.iter().filter(|m| *m == "a").count(), 11);
            assert_eq!(markers.last().map(String::as_str), Some("b"));
        })
        .await;
    }

    /// A failed read task gives back the `ready` permit it consumed.
    #[tokio::test]
    async fn a_failed_pop_gives_its_permit_back() {
        let tmp = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let disk =
            PersistentQueue::open(tmp.path().join("q"), false).unwrap_or_else(|e| panic!("{e:#}"));
        let shared = Arc::new(PersistentShared {
            disk,
            room: Semaphore::new(1),
            debt: AtomicUsize::new(0),
            ready: Semaphore::new(0),
            capacity: 1,
        });
        let ctx = context(None);
        let client: Arc<dyn ExportClient> = ScriptedClient::ok();
        let core = Core {
            id: ctx.id.clone(),
            client,
            timeout: None,
            retry: RetryConfig::default(),
            metrics: ctx.telemetry.exporter(&ctx.id, 1),
            shutdown: CancellationToken::new(),
            log: LogLimiter::default(),
            failed_attempts: AtomicU64::new(0),
            drain_failed: AtomicBool::new(false),
            drain_dropped_requests: AtomicU64::new(0),
            drain_dropped_items: AtomicU64::new(0),
        };
        let popped = take_item(&core, &shared, |_| panic!("simulated read failure")).await;
        assert!(popped.is_none());
        assert_eq!(shared.ready.available_permits(), 1);
    }

    #[tokio::test]
    async fn persistent_queue_skips_corrupt_items() {
        bounded(async {
            let tmp = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
            let ctx = context(Some(tmp.path()));
            let down = ScriptedClient::new(Vec::new(), Some(ExportError::retryable("down")), None);
            let (consumer, handle) = start(&ctx, settings(persistent_queue(1, 10)), &down).await;
            for m in ["a", "b", "c"] {
                drop(consume(&consumer, m).await);
            }
            down.wait_calls(1).await;
            ctx.shutdown.cancel();
            stop(consumer, handle).await;
            drop(ctx);

            let files = queue_files(tmp.path());
            let dir = tmp.path().join("exporter_otlp_backend/queue");
            // "b" is torn in the middle (as after a power loss without fsync).
            let b = dir.join(&files[1]);
            let len = std::fs::metadata(&b)
                .map(|m| m.len())
                .unwrap_or_else(|e| panic!("{e}"));
            let f = std::fs::OpenOptions::new()
                .write(true)
                .open(&b)
                .unwrap_or_else(|e| panic!("{e}"));
            f.set_len(len / 2).unwrap_or_else(|e| panic!("{e}"));

            let ctx = context(Some(tmp.path()));
            let up = ScriptedClient::ok();
            let (consumer, handle) = start(&ctx, settings(persistent_queue(1, 10)), &up).await;
            up.wait_calls(2).await;
            stop(consumer, handle).await;
            assert_eq!(up.markers(), ["a", "c"]);
            assert!(queue_files(tmp.path()).is_empty());
        })
        .await;
    }

    #[tokio::test]
    async fn persistent_queue_is_bounded() {
        bounded(async {
            let tmp = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
            let ctx = context(Some(tmp.path()));
            let gate = Arc::new(Semaphore::new(0));
            let client = ScriptedClient::new(Vec::new(), None, Some(Arc::clone(&gate)));
            let queue = QueueConfig {
                block_on_overflow: false,
                ..persistent_queue(1, 2)
            };
            let (consumer, handle) = start(&ctx, untimed(queue), &client).await;
            drop(consume(&consumer, "1").await);
            client.wait_calls(1).await;
            drop(consume(&consumer, "2").await);
            // "1" being exported still holds its place.
            let (b, third) = batch("3");
            assert!(matches!(
                consumer.consume(b).await,
                Err(ConsumeError::Refused { .. })
            ));
            assert_eq!(status(third).await, DeliveryStatus::Failed);
            gate.add_permits(100);
            client.wait_calls(2).await;
            // Room again once "1" was sent and removed.
            let rx = consume(&consumer, "4").await;
            assert_eq!(status(rx).await, DeliveryStatus::Delivered);
            client.wait_calls(3).await;
            stop(consumer, handle).await;
            assert_eq!(client.markers(), ["1", "2", "4"]);
        })
        .await;
    }

    /// An item put back after its retries ran out keeps its place: the items
    /// on disk never exceed `queue_size`, however long the backend fails.
    #[tokio::test]
    async fn persistent_queue_requeue_stays_within_capacity() {
        bounded(async {
            let tmp = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
            let ctx = context(Some(tmp.path()));
            let client =
                ScriptedClient::new(Vec::new(), Some(ExportError::retryable("down")), None);
            let mut s = settings(QueueConfig {
                block_on_overflow: false,
                ..persistent_queue(1, 2)
            });
            s.retry.max_elapsed_time = GoDuration::from_millis(50);
            let (consumer, handle) = start(&ctx, s, &client).await;
            drop(consume(&consumer, "a").await);
            drop(consume(&consumer, "b").await);
            // "a" has failed, been put back and been taken again.
            client.wait_calls(8).await;
            for marker in ["c", "d"] {
                let (b, rx) = batch(marker);
                assert!(
                    matches!(consumer.consume(b).await, Err(ConsumeError::Refused { .. })),
                    "{marker} must not fit"
                );
                assert_eq!(status(rx).await, DeliveryStatus::Failed);
                assert_eq!(queue_files(tmp.path()).len(), 2);
            }
            ctx.shutdown.cancel();
            stop(consumer, handle).await;
            assert_eq!(queue_files(tmp.path()).len(), 2);
        })
        .await;
    }

    /// A write that fails (a full disk; here, the queue directory is gone)
    /// makes the request wait, like a full queue, until the write works:
    /// pushed back, never dropped. Without `block_on_overflow` it is refused.
    #[tokio::test]
    async fn persistent_queue_waits_while_storage_cannot_be_written() {
        bounded(async {
            let tmp = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
            let ctx = context(Some(tmp.path()));
            let client = ScriptedClient::ok();
            let (consumer, handle) = start(&ctx, settings(persistent_queue(1, 10)), &client).await;
            let dir = tmp.path().join("exporter_otlp_backend/queue");
            let moved = tmp.path().join("moved");
            std::fs::rename(&dir, &moved).unwrap_or_else(|e| panic!("{e}"));
            let (b, rx) = batch("a");
            let waiting = {
                let consumer = Arc::clone(&consumer);
                tokio::spawn(async move { consumer.consume(b).await })
            };
            tokio::time::sleep(Duration::from_millis(300)).await;
            assert!(!waiting.is_finished(), "nothing could be written yet");
            std::fs::rename(&moved, &dir).unwrap_or_else(|e| panic!("{e}"));
            let consumed = tokio::time::timeout(HANG, waiting).await;
            assert!(matches!(consumed, Ok(Ok(Ok(())))), "{consumed:?}");
            assert_eq!(status(rx).await, DeliveryStatus::Delivered);
            client.wait_calls(1).await;
            stop(consumer, handle).await;
            assert_eq!(client.markers(), ["a"]);

            let ctx = context(Some(tmp.path()));
            let queue = QueueConfig {
                block_on_overflow: false,
                ..persistent_queue(1, 10)
            };
            let (consumer, handle) = start(&ctx, settings(queue), &client).await;
            std::fs::rename(&dir, &moved).unwrap_or_else(|e| panic!("{e}"));
            let (b, rx) = batch("b");
            assert!(matches!(
                consumer.consume(b).await,
                Err(ConsumeError::Refused { .. })
            ));
            assert_eq!(status(rx).await, DeliveryStatus::Failed);
            stop(consumer, handle).await;
        })
        .await;
    }

    #[test]
    fn queue_and_retry_settings_are_checked() {
        assert!(QueueConfig::default().validate().is_ok());
        let huge = memory_queue(1, MAX_MEMORY_QUEUE_SIZE + 1);
        assert!(huge.validate().is_err());
        assert!(persistent_queue(1, MAX_MEMORY_QUEUE_SIZE + 1)
            .validate()
            .is_ok());
        assert!(memory_queue(0, 1).validate().is_err());
        let disabled = QueueConfig {
            enabled: false,
            ..memory_queue(0, 0)
        };
        assert!(disabled.validate().is_ok());
        assert!(RetryConfig::default().validate().is_ok());

        let retry = |initial: u64, max: u64, elapsed: u64| RetryConfig {
            initial_interval: GoDuration::from_millis(initial),
            max_interval: GoDuration::from_millis(max),
            max_elapsed_time: GoDuration::from_millis(elapsed),
            ..RetryConfig::default()
        };
        assert!(retry(10, 50, 60_000).validate().is_ok());
        assert!(retry(10, 50, 0).validate().is_ok(), "0 retries forever");
        assert!(retry(50, 50, 50).validate().is_ok());
        let err = retry(0, 50, 1000).validate().err().unwrap_or_default();
        assert!(err.contains("initial_interval"), "{err}");
        let err = retry(100, 50, 1000).validate().err().unwrap_or_default();
        assert!(err.contains("max_interval"), "{err}");
        let err = retry(10, 500, 100).validate().err().unwrap_or_default();
        assert!(err.contains("max_elapsed_time"), "{err}");
        // Not checked when retries are off.
        let off = RetryConfig {
            enabled: false,
            ..retry(0, 0, 1)
        };
        assert!(off.validate().is_ok());
    }

    #[test]
    fn requests_round_trip_through_their_disk_form() {
        let logs = log_payload("x");
        let encoded = encode_request(&logs);
        assert_eq!(encoded[0], TAG_LOGS);
        let expected = ExportLogsServiceRequest {
            resource_logs: match &logs {
                Payload::Logs(rl) => rl.clone(),
                Payload::Metrics(_) => Vec::new(),
            },
        }
        .encode_to_vec();
        assert_eq!(&encoded[1..], &expected[..]);
        assert_eq!(decode_request(&encoded), Ok(logs));

        let metrics = Payload::Metrics(vec![ResourceMetrics {
            scope_metrics: vec![ScopeMetrics {
                metrics: vec![Metric {
                    name: "linux.oom.kills".into(),
                    data: Some(metric::Data::Gauge(Gauge {
                        data_points: vec![NumberDataPoint::default()],
                    })),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }]);
        assert_eq!(decode_request(&encode_request(&metrics)), Ok(metrics));
        assert!(decode_request(&[]).is_err());
        assert!(decode_request(&[9, 1, 2]).is_err());
        assert!(decode_request(&[TAG_LOGS, 0xff, 0xff]).is_err());
    }
}
