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
//!
//! One file per concern: this one holds what every mode shares (the client
//! trait, the settings, [`spawn`], and the retry loop with its accounting);
//! each sending mode, the retry and queue settings, the backoff and the
//! on-disk form of a request have their own.
//!
//! [`PersistentQueue`]: crate::extensions::file_storage::PersistentQueue

mod backoff;
mod direct;
mod disk_codec;
mod logs_encoding;
mod memory_queue;
mod persistent_queue;
mod queue_config;
mod retry;
#[cfg(test)]
mod tests;

pub use disk_codec::{decode_request, encode_request, EncodedRequest, RequestSize};
pub use logs_encoding::encode_resource_logs;
pub use queue_config::{QueueConfig, Sizer, MAX_MEMORY_QUEUE_SIZE, MAX_QUEUE_SIZE};
pub use retry::RetryConfig;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::component::BuildContext;
use crate::config::ComponentId;
use crate::pipeline::{ConsumeError, DeliveryStatus, DynConsumer, Finalizers, Payload, Signal};
use crate::telemetry::ExporterMetrics;
use backoff::Backoff;
use direct::DirectConsumer;
use memory_queue::{memory_worker, MemoryQueueConsumer, Request, UrgentLane};
use persistent_queue::spawn_persistent;

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
    /// The message without credentials (an endpoint URL's password, an
    /// Authorization header), since it is logged and counted: errors of
    /// HTTP clients quote the URL they failed on.
    pub fn with_secrets_masked(mut self) -> Self {
        let masked = match crate::redact::redact_text(&self.message) {
            std::borrow::Cow::Owned(masked) => Some(masked),
            std::borrow::Cow::Borrowed(_) => None,
        };
        if let Some(masked) = masked {
            self.message = masked;
        }
        self
    }

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

    /// Whether this client sends the OTLP protobuf encoding: then the
    /// in-memory queue encodes each request once, as it is queued, holds
    /// that ([`EncodedRequest`], a fraction of the decoded records' memory)
    /// and hands it to [`ExportClient::export_encoded`].
    fn sends_protobuf(&self) -> bool {
        false
    }

    /// Whether urgent requests (OOM kills) are exported on the urgent lane
    /// ([`crate::urgent_lane`]), past the in-memory queue. Only for a client
    /// that sends protobuf (the request then reaches it encoded, marked
    /// urgent) and sends urgent requests on a connection whose tasks run on
    /// the lane too: a connection opened from the lane on a pool shared with
    /// bulk traffic would carry bulk requests on the lane's thread.
    fn uses_urgent_lane(&self) -> bool {
        false
    }

    /// One attempt at sending a request encoded by the queue. The default
    /// decodes it again and calls [`ExportClient::export`].
    async fn export_encoded(
        &self,
        request: &EncodedRequest,
    ) -> Result<ExportResponse, ExportError> {
        let payload = request.decode().map_err(ExportError::permanent)?;
        self.export(&Arc::new(payload)).await
    }

    /// Called once after the queue has drained (flush files, close connections).
    async fn shutdown(&self) {}
}

/// A request as a worker sends it: the pipeline's payload, or its encoding
/// (see [`ExportClient::sends_protobuf`]).
pub(crate) enum QueuedData {
    Payload(Arc<Payload>),
    Encoded(EncodedRequest),
}

impl QueuedData {
    fn signal(&self) -> Signal {
        match self {
            QueuedData::Payload(p) => p.signal(),
            QueuedData::Encoded(e) => e.signal(),
        }
    }

    fn item_count(&self) -> usize {
        match self {
            QueuedData::Payload(p) => p.item_count(),
            QueuedData::Encoded(e) => e.item_count(),
        }
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
        sizer: queue.sizer,
        queued: Default::default(),
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
        // Opening scans the directory and recounts what is there.
        let (disk, resumed) = tokio::task::spawn_blocking(move || {
            storage.queue("exporter", &owner).map(|disk| {
                let resumed = persistent_queue::recount(&disk);
                (disk, resumed)
            })
        })
        .await
        .map_err(|e| anyhow::anyhow!("{id}: opening the persistent queue failed: {e}"))?
        .map_err(|e| anyhow::anyhow!("{id}: sending_queue::storage {storage_id}: {e:#}"))?;
        return Ok(spawn_persistent(core, client, &queue, disk, resumed));
    }

    // Unbounded channel, bounded by `room` (in the sizer's unit): every
    // request counts at least 1, so the channel never holds more than
    // `queue_size` requests.
    let (tx, rx) = async_channel::unbounded::<Request>();
    let room = Arc::new(tokio::sync::Semaphore::new(queue.queue_size));
    let mut workers = JoinSet::new();
    for _ in 0..queue.num_consumers {
        workers.spawn(memory_worker(
            Arc::clone(&core),
            rx.clone(),
            Arc::clone(&room),
        ));
    }
    drop(rx);
    let urgent = if client.uses_urgent_lane() {
        UrgentLane::new()
    } else {
        None
    };
    let urgent_tasks = urgent.as_ref().map(|lane| lane.tasks.clone());
    // Aborted (the service's shutdown deadline passed), the exporter's task
    // ends the urgent exports still running with it, as it does its
    // workers': their requests are then reported failed.
    let abort_urgent = urgent.as_ref().map(|lane| lane.abort.clone().drop_guard());
    let consumer = MemoryQueueConsumer {
        core: Arc::clone(&core),
        tx,
        room,
        capacity: queue.queue_size,
        block_on_overflow: queue.block_on_overflow,
        urgent,
    };
    let handle = tokio::spawn(async move {
        let _abort_urgent = abort_urgent;
        join_workers(&core.id, workers).await;
        // The workers end once the consumer is gone: no urgent export
        // starts after this.
        if let Some(tasks) = urgent_tasks {
            tasks.close();
            tasks.wait().await;
        }
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
    /// The unit of the queue's size and capacity.
    sizer: Sizer,
    /// Each signal's share of the queue, in the sizer's unit (by
    /// [`signal_index`]), mirrored to the queue size gauges.
    queued: [AtomicU64; 2],
}

fn signal_index(signal: Signal) -> usize {
    match signal {
        Signal::Logs => 0,
        Signal::Metrics => 1,
    }
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
    async fn attempt(&self, data: &QueuedData) -> Result<ExportResponse, ExportError> {
        self.attempt_unmasked(data)
            .await
            .map_err(ExportError::with_secrets_masked)
    }

    async fn attempt_unmasked(&self, data: &QueuedData) -> Result<ExportResponse, ExportError> {
        let export = async {
            match data {
                QueuedData::Payload(payload) => self.client.export(payload).await,
                QueuedData::Encoded(request) => self.client.export_encoded(request).await,
            }
        };
        match self.timeout {
            Some(limit) => match tokio::time::timeout(limit, export).await {
                Ok(result) => result,
                Err(_) => Err(ExportError::retryable(format!(
                    "export timed out after {limit:?}"
                ))),
            },
            None => export.await,
        }
    }

    /// Attempts until success, a permanent error, the end of the retry budget,
    /// or `stop` (checked only between attempts: every request gets at least
    /// one attempt, and an attempt in progress is not cut short).
    async fn export_with_retry(&self, data: &QueuedData, stop: &CancellationToken) -> Outcome {
        let started = Instant::now();
        let mut backoff = Backoff::new(&self.retry);
        loop {
            let error = match self.attempt(data).await {
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
        (signal, items): (Signal, usize),
        finalizers: Finalizers,
        outcome: &Outcome,
        started: Instant,
    ) {
        self.metrics.export_latency(started.elapsed());
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
    fn drop_in_drain(&self, (signal, items): (Signal, usize), finalizers: Finalizers) {
        self.metrics.send_failed(signal, items);
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

    /// `n` (in the sizer's unit) of `signal` entered the queue.
    fn queue_grew(&self, signal: Signal, n: u64) {
        let now = self.queued[signal_index(signal)]
            .fetch_add(n, Ordering::AcqRel)
            .saturating_add(n);
        self.metrics.set_queue_size(signal, now);
    }

    /// `n` (in the sizer's unit) of `signal` left the queue.
    fn queue_shrank(&self, signal: Signal, n: u64) {
        let before = self.queued[signal_index(signal)]
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |q| {
                Some(q.saturating_sub(n))
            })
            .unwrap_or(0);
        self.metrics
            .set_queue_size(signal, before.saturating_sub(n));
    }

    /// A request larger than the whole queue can never be queued: refused at
    /// once, whatever `block_on_overflow` says, as the collector's memory
    /// queue does (`errSizeTooLarge`), and counted as failing to enqueue.
    fn too_large(
        &self,
        signal: Signal,
        items: usize,
        finalizers: Finalizers,
        size: u64,
        capacity: usize,
    ) -> ConsumeError {
        self.metrics.enqueue_failed(signal, items);
        let sizer = self.sizer.as_str();
        if let Some(suppressed) = self.log.allow("too_large") {
            tracing::error!(
                exporter = %self.id,
                %signal,
                dropped_items = items,
                size,
                sizer,
                queue_size = capacity,
                suppressed,
                "Request is larger than the whole sending queue. Dropping data."
            );
        }
        finalizers.settle(DeliveryStatus::Rejected);
        ConsumeError::Permanent(format!(
            "request of {size} {sizer} is larger than the sending queue of exporter {} ({capacity} {sizer}): element size too large",
            self.id
        ))
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
