//! The `batch` processor: merges small batches into larger ones and splits
//! oversized ones, like the collector's `batchprocessor`.
//!
//! The returned consumer only hands batches to a bounded channel (so a slow
//! downstream pushes back on receivers); a task of its own buffers them and
//! flushes to the next consumer when
//! - the buffered item count reaches `send_batch_size`,
//! - `timeout` has passed since the first item was buffered,
//! - an urgent batch (an OOM kill) arrives: it goes at once, in a request of
//!   its own, and everything the channel took before it goes right after it
//!   (a sender still waiting for room goes with the next flush),
//! - the consumer is dropped (shutdown): what is buffered is flushed, then the
//!   task ends and drops `next`.
//!
//! With `send_batch_max_size` > 0, no batch sent on holds more items than
//! that: larger data is split across resources, scopes and metrics (resource,
//! scope and metric metadata are copied to every piece), and each piece gets
//! its own acknowledgement share.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use opentelemetry_proto::tonic::logs::v1::{ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::metrics::v1::{
    metric::Data, ExponentialHistogram, Gauge, Histogram, Metric, ResourceMetrics, ScopeMetrics,
    Sum, Summary,
};
use serde::Deserialize;
use tokio::sync::{mpsc, Notify};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::component::{
    BuildContext, ComponentConfig, Factory, ProcessorConfig, ProcessorFactory, Stability,
};
use crate::config::GoDuration;
use crate::config::{from_node, ConfigError, Node, ValidationError};
use crate::pipeline::{
    Batch, ConsumeError, Consumer, DeliveryStatus, DynConsumer, Finalizers, Payload, Signal,
};
use crate::telemetry::ProcessorMetrics;

/// Batches waiting in the channel between the consumer and the batching
/// task: as many as CPUs, as the collector's `batchprocessor`
/// (`runtime.NumCPU()`), at least 2 and at most 16. Small on purpose: when
/// the task is blocked on a slow `next`, senders wait; each waiting batch is
/// a decoded request (about 1 MB for 1,000 log records). An urgent one (an
/// OOM kill) does not wait behind them: it goes past the channel.
fn channel_capacity() -> usize {
    std::thread::available_parallelism()
        .map_or(2, std::num::NonZeroUsize::get)
        .clamp(2, 16)
}

/// At most one "dropped" log line per this interval.
const DROP_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// `batch` configuration, with the collector's defaults.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BatchConfig {
    /// Item count (log records, metric data points) at which a batch is sent
    /// regardless of the timeout. It triggers a flush; it does not bound the
    /// batch size (see `send_batch_max_size`). 0 leaves only the timeout.
    pub send_batch_size: usize,
    /// Upper bound on the items of one batch sent on; larger data is split.
    /// 0 means no bound. When set, it must be at least `send_batch_size`.
    pub send_batch_max_size: usize,
    /// Time after the first buffered item at which the batch is sent
    /// regardless of its size. 0 sends every batch at once (then only
    /// `send_batch_max_size` applies).
    pub timeout: GoDuration,
    /// The collector's batching by request metadata; only empty here, since
    /// no receiver keeps request metadata (`include_metadata` is refused).
    pub metadata_keys: Vec<String>,
    /// The collector's limit on distinct `metadata_keys` values (default
    /// 1000); without `metadata_keys` it has no effect, there as here.
    pub metadata_cardinality_limit: u32,
}

impl Default for BatchConfig {
    fn default() -> Self {
        BatchConfig {
            send_batch_size: 8192,
            send_batch_max_size: 0,
            timeout: GoDuration::from_millis(200),
            metadata_keys: Vec::new(),
            metadata_cardinality_limit: 1000,
        }
    }
}

impl ComponentConfig for BatchConfig {
    fn validate(&self) -> Result<(), ValidationError> {
        if self.send_batch_max_size > 0 && self.send_batch_max_size < self.send_batch_size {
            return Err(ValidationError::at(
                "send_batch_max_size",
                "must be greater or equal to send_batch_size",
            ));
        }
        if !self.metadata_keys.is_empty() {
            return Err(ValidationError::at(
                "metadata_keys",
                "batching by request metadata is not supported: no receiver of this agent \
                 keeps request metadata (the otlp receiver refuses include_metadata: true), \
                 so every batch would have the same empty key; remove metadata_keys",
            ));
        }
        Ok(())
    }
}

/// Makes `batch` processors.
pub struct BatchProcessorFactory;

impl Factory for BatchProcessorFactory {
    fn type_names(&self) -> &'static [&'static str] {
        &["batch"]
    }

    fn stability(&self) -> Stability {
        Stability::Beta
    }

    fn description(&self) -> &'static str {
        "groups records into batches by size and time before export"
    }
}

impl ProcessorFactory for BatchProcessorFactory {
    fn decode(&self, node: &Node) -> Result<Box<dyn ProcessorConfig>, ConfigError> {
        Ok(Box::new(from_node::<BatchConfig>(node)?))
    }
}

impl ProcessorConfig for BatchConfig {
    fn build(
        &self,
        ctx: &BuildContext,
        signal: Signal,
        next: DynConsumer,
    ) -> anyhow::Result<(DynConsumer, Option<JoinHandle<()>>)> {
        build(self, ctx, signal, next)
    }
}

pub fn build(
    c: &BatchConfig,
    ctx: &BuildContext,
    s: Signal,
    next: DynConsumer,
) -> anyhow::Result<(DynConsumer, Option<JoinHandle<()>>)> {
    c.validate()
        .map_err(|e| anyhow::anyhow!("{}: {e}", ctx.id))?;
    let (tx, rx) = mpsc::channel(channel_capacity());
    let flush_now = Arc::new(Notify::new());
    let drops = Arc::new(Drops {
        id: ctx.id.to_string(),
        signal: s,
        metrics: ctx.telemetry.processor(&ctx.id),
        log: std::sync::Mutex::new(DropLog::default()),
    });
    let batcher = Batcher {
        send_batch_size: c.send_batch_size,
        send_batch_max_size: c.send_batch_max_size,
        timeout: c.timeout.get(),
        next: Arc::clone(&next),
        buffer: None,
        drops: Arc::clone(&drops),
    };
    let task = tokio::spawn(batcher.run(rx, Arc::clone(&flush_now)));
    let consumer = BatchConsumer {
        tx,
        signal: s,
        next,
        send_batch_max_size: c.send_batch_max_size,
        flush_now,
        drops,
    };
    Ok((Arc::new(consumer), Some(task)))
}

/// What the pipeline feeds: hands batches to the batching task; sends
/// urgent ones on itself.
struct BatchConsumer {
    tx: mpsc::Sender<Batch>,
    signal: Signal,
    next: DynConsumer,
    send_batch_max_size: usize,
    /// Tells the batching task to send everything offered so far.
    flush_now: Arc<Notify>,
    drops: Arc<Drops>,
}

impl BatchConsumer {
    /// An urgent batch (an OOM kill) goes to `next` from here, in requests
    /// of its own (split at `send_batch_max_size`): through the channel it
    /// would wait behind the bulk batches queued there and the one the task
    /// is sending (encoding 8,192 records takes milliseconds). Then the task
    /// sends everything the channel took before it. A refusal is what the
    /// task does with its own batches: counted as dropped, logged, the piece's
    /// acknowledgement failed; the caller is not asked to offer it again
    /// (pieces already taken would go twice).
    async fn send_urgent(&self, batch: Batch) {
        let items = batch.item_count();
        if self.send_batch_max_size == 0 || items <= self.send_batch_max_size {
            if let Err(e) = self.next.consume(batch).await {
                self.drops.dropped(items, &e);
            }
        } else {
            let payload = Arc::try_unwrap(batch.payload).unwrap_or_else(|shared| (*shared).clone());
            let pieces = split_payload(payload, self.send_batch_max_size);
            let shares = batch.finalizers.split(pieces.len());
            for (piece, finalizers) in pieces.into_iter().zip(shares) {
                let items = piece.item_count();
                let piece = Batch {
                    payload: Arc::new(piece),
                    finalizers,
                    urgent: true,
                };
                if let Err(e) = self.next.consume(piece).await {
                    self.drops.dropped(items, &e);
                }
            }
        }
        self.flush_now.notify_one();
    }
}

#[async_trait]
impl Consumer for BatchConsumer {
    async fn consume(&self, batch: Batch) -> Result<(), ConsumeError> {
        if batch.signal() != self.signal {
            return Err(ConsumeError::Permanent(format!(
                "batch processor of a {} pipeline got {} data",
                self.signal,
                batch.signal()
            )));
        }
        if batch.urgent {
            self.send_urgent(batch).await;
            return Ok(());
        }
        self.tx
            .send(batch)
            .await
            .map_err(|_| ConsumeError::Shutdown)
    }
}

/// Data waiting to be sent.
struct Buffered {
    payload: Payload,
    finalizers: Finalizers,
    items: usize,
}

/// Why a flush happens.
#[derive(Copy, Clone, PartialEq, Eq, Debug)]
enum Flush {
    /// `send_batch_size` reached: full pieces go, a short remainder stays.
    Size,
    /// Timeout, an urgent batch sent, shutdown: everything goes.
    All,
}

#[derive(Default)]
struct DropLog {
    last: Option<Instant>,
    suppressed_batches: u64,
}

/// Batches the next consumer refused: counted, and logged at most once per
/// [`DROP_LOG_INTERVAL`] (from the task and from urgent sends alike).
struct Drops {
    id: String,
    signal: Signal,
    metrics: ProcessorMetrics,
    log: std::sync::Mutex<DropLog>,
}

impl Drops {
    fn dropped(&self, items: usize, error: &ConsumeError) {
        self.metrics.dropped(self.signal, items);
        let now = Instant::now();
        let mut log = self
            .log
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if log
            .last
            .is_none_or(|last| now.duration_since(last) >= DROP_LOG_INTERVAL)
        {
            tracing::warn!(
                processor = %self.id,
                items,
                suppressed_batches = log.suppressed_batches,
                error = %error,
                "batch dropped: the next component refused it"
            );
            *log = DropLog {
                last: Some(now),
                suppressed_batches: 0,
            };
        } else {
            log.suppressed_batches += 1;
        }
    }
}

struct Batcher {
    send_batch_size: usize,
    send_batch_max_size: usize,
    timeout: Duration,
    next: DynConsumer,
    buffer: Option<Buffered>,
    drops: Arc<Drops>,
}

impl Batcher {
    async fn run(mut self, mut rx: mpsc::Receiver<Batch>, flush_now: Arc<Notify>) {
        // Set when the buffer goes from empty to non-empty.
        let mut deadline: Option<Instant> = None;
        loop {
            tokio::select! {
                biased;
                () = flush_now.notified() => {
                    // An urgent batch went past the channel: what was offered
                    // before it goes now, whether buffered or still queued.
                    while let Ok(batch) = rx.try_recv() {
                        self.add(batch);
                    }
                    self.flush(Flush::All).await;
                    deadline = None;
                }
                received = rx.recv() => match received {
                    Some(batch) => {
                        if self.buffer.is_none() {
                            deadline = Some(Instant::now() + self.timeout);
                        }
                        self.add(batch);
                        if self.timeout.is_zero() {
                            self.flush(Flush::All).await;
                        } else if self.send_batch_size > 0
                            && self.buffer.as_ref().is_some_and(|b| b.items >= self.send_batch_size)
                        {
                            self.flush(Flush::Size).await;
                            if self.buffer.is_some() {
                                // The remainder waits a full timeout, as in the collector.
                                deadline = Some(Instant::now() + self.timeout);
                            }
                        }
                        if self.buffer.is_none() {
                            deadline = None;
                        }
                    }
                    None => {
                        self.flush(Flush::All).await;
                        return;
                    }
                },
                () = sleep_until_opt(deadline), if deadline.is_some() => {
                    deadline = None;
                    self.flush(Flush::All).await;
                }
            }
        }
    }

    /// `batch` as data to send.
    fn buffered(&self, batch: Batch) -> Buffered {
        let items = batch.item_count();
        let payload = Arc::try_unwrap(batch.payload).unwrap_or_else(|shared| (*shared).clone());
        Buffered {
            payload,
            finalizers: batch.finalizers,
            items,
        }
    }

    fn add(&mut self, batch: Batch) {
        match &mut self.buffer {
            None => self.buffer = Some(self.buffered(batch)),
            Some(buf) => {
                let items = batch.item_count();
                let payload =
                    Arc::try_unwrap(batch.payload).unwrap_or_else(|shared| (*shared).clone());
                if let Err(mismatched) = buf.payload.append(payload) {
                    // A pipeline carries one signal, so this is a wiring bug;
                    // the data is not silently lost: its sender learns it failed.
                    tracing::error!(
                        expected = %buf.payload.signal(),
                        got = %mismatched.signal(),
                        "batch processor received data of another signal; dropping it"
                    );
                    batch.finalizers.settle(DeliveryStatus::Failed);
                    return;
                }
                buf.finalizers.merge(batch.finalizers);
                buf.items += items;
            }
        }
    }

    async fn flush(&mut self, why: Flush) {
        let Some(buf) = self.buffer.take() else {
            return;
        };
        self.send_all(buf, why).await;
    }

    /// Sends `buf`, split at `send_batch_max_size`; with `Flush::Size`, a
    /// short remainder goes back to the buffer.
    async fn send_all(&mut self, buf: Buffered, why: Flush) {
        if self.send_batch_max_size == 0 || buf.items <= self.send_batch_max_size {
            if why == Flush::Size && buf.items < self.send_batch_size {
                self.buffer = Some(buf);
                return;
            }
            self.send(buf.payload, buf.finalizers, buf.items).await;
            return;
        }
        let pieces = split_payload(buf.payload, self.send_batch_max_size);
        let shares = buf.finalizers.split(pieces.len());
        let last = pieces.len().saturating_sub(1);
        for (i, (piece, finalizers)) in pieces.into_iter().zip(shares).enumerate() {
            let items = piece.item_count();
            if i == last && why == Flush::Size && items < self.send_batch_size {
                self.buffer = Some(Buffered {
                    payload: piece,
                    finalizers,
                    items,
                });
                return;
            }
            self.send(piece, finalizers, items).await;
        }
    }

    async fn send(&mut self, payload: Payload, finalizers: Finalizers, items: usize) {
        let batch = Batch {
            payload: Arc::new(payload),
            finalizers,
            urgent: false,
        };
        // On error the batch (and its unsettled finalizers) is dropped:
        // receivers waiting for acknowledgement see it as failed.
        if let Err(e) = self.next.consume(batch).await {
            self.drops.dropped(items, &e);
        }
    }
}

async fn sleep_until_opt(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

/// Splits `payload` into pieces of at most `max_items` items (`max_items` > 0).
/// Containers without items (a resource without scopes, a metric without
/// points) travel with the piece being filled, so nothing is lost.
pub(crate) fn split_payload(payload: Payload, max_items: usize) -> Vec<Payload> {
    match payload {
        Payload::Logs(rl) => split_logs(rl, max_items)
            .into_iter()
            .map(Payload::Logs)
            .collect(),
        Payload::Metrics(rm) => split_metrics(rm, max_items)
            .into_iter()
            .map(Payload::Metrics)
            .collect(),
    }
}

/// Pieces being filled, up to `max` items each.
struct Pieces<T> {
    max: usize,
    done: Vec<Vec<T>>,
    current: Vec<T>,
    count: usize,
}

impl<T> Pieces<T> {
    fn new(max: usize) -> Self {
        Pieces {
            max: max.max(1),
            done: Vec::new(),
            current: Vec::new(),
            count: 0,
        }
    }

    /// Room left in the current piece; starts a new piece when it is full.
    /// Returns true when a new piece was started.
    fn make_room(&mut self) -> bool {
        if self.count >= self.max {
            self.done.push(std::mem::take(&mut self.current));
            self.count = 0;
            true
        } else {
            false
        }
    }

    fn room(&self) -> usize {
        self.max - self.count
    }

    fn finish(mut self) -> Vec<Vec<T>> {
        if !self.current.is_empty() {
            self.done.push(self.current);
        }
        self.done
    }
}

fn split_logs(input: Vec<ResourceLogs>, max: usize) -> Vec<Vec<ResourceLogs>> {
    let mut pieces = Pieces::new(max);
    for mut rl in input {
        let scopes = std::mem::take(&mut rl.scope_logs);
        // Whether the last resource of the current piece is `rl`'s copy.
        let mut resource_open = false;
        for mut sl in scopes {
            let mut records = std::mem::take(&mut sl.log_records).into_iter();
            let mut scope_open = false;
            loop {
                if pieces.make_room() {
                    resource_open = false;
                    scope_open = false;
                }
                if !resource_open {
                    pieces.current.push(ResourceLogs {
                        resource: rl.resource.clone(),
                        scope_logs: Vec::new(),
                        schema_url: rl.schema_url.clone(),
                    });
                    resource_open = true;
                }
                let take = pieces.room().min(records.len());
                let Some(resource) = pieces.current.last_mut() else {
                    break;
                };
                if !scope_open {
                    resource.scope_logs.push(ScopeLogs {
                        scope: sl.scope.clone(),
                        log_records: Vec::with_capacity(take),
                        schema_url: sl.schema_url.clone(),
                    });
                    scope_open = true;
                }
                if let Some(scope) = resource.scope_logs.last_mut() {
                    scope.log_records.extend(records.by_ref().take(take));
                }
                pieces.count += take;
                if records.len() == 0 {
                    break;
                }
            }
        }
        if !resource_open {
            pieces.current.push(rl);
        }
    }
    pieces.finish()
}

fn split_metrics(input: Vec<ResourceMetrics>, max: usize) -> Vec<Vec<ResourceMetrics>> {
    let mut pieces = Pieces::new(max);
    for mut rm in input {
        let scopes = std::mem::take(&mut rm.scope_metrics);
        let mut resource_open = false;
        for mut sm in scopes {
            let metrics = std::mem::take(&mut sm.metrics);
            let mut scope_open = false;
            for mut metric in metrics {
                let mut data = metric.data.take();
                loop {
                    if pieces.make_room() {
                        resource_open = false;
                        scope_open = false;
                    }
                    let remaining = data.as_ref().map_or(0, point_count);
                    let take = pieces.room().min(remaining);
                    if !resource_open {
                        pieces.current.push(ResourceMetrics {
                            resource: rm.resource.clone(),
                            scope_metrics: Vec::new(),
                            schema_url: rm.schema_url.clone(),
                        });
                        resource_open = true;
                    }
                    let Some(resource) = pieces.current.last_mut() else {
                        break;
                    };
                    if !scope_open {
                        resource.scope_metrics.push(ScopeMetrics {
                            scope: sm.scope.clone(),
                            metrics: Vec::new(),
                            schema_url: sm.schema_url.clone(),
                        });
                        scope_open = true;
                    }
                    let Some(scope) = resource.scope_metrics.last_mut() else {
                        break;
                    };
                    let chunk = match &mut data {
                        // The whole rest fits: move it instead of copying.
                        Some(_) if take == remaining => data.take(),
                        Some(d) => Some(take_points(d, take)),
                        None => None,
                    };
                    // Every round is a new piece (or the last round), so the
                    // chunk always opens a new copy of the metric.
                    scope.metrics.push(Metric {
                        name: metric.name.clone(),
                        description: metric.description.clone(),
                        unit: metric.unit.clone(),
                        metadata: metric.metadata.clone(),
                        data: chunk,
                    });
                    pieces.count += take;
                    if data.is_none() {
                        break;
                    }
                }
            }
        }
        if !resource_open {
            pieces.current.push(rm);
        }
    }
    pieces.finish()
}

fn point_count(data: &Data) -> usize {
    match data {
        Data::Gauge(g) => g.data_points.len(),
        Data::Sum(s) => s.data_points.len(),
        Data::Histogram(h) => h.data_points.len(),
        Data::ExponentialHistogram(h) => h.data_points.len(),
        Data::Summary(s) => s.data_points.len(),
    }
}

/// Moves the first `n` points of `data` into a new `Data` of the same kind.
fn take_points(data: &mut Data, n: usize) -> Data {
    fn front<T>(v: &mut Vec<T>, n: usize) -> Vec<T> {
        let rest = v.split_off(n.min(v.len()));
        std::mem::replace(v, rest)
    }
    match data {
        Data::Gauge(g) => Data::Gauge(Gauge {
            data_points: front(&mut g.data_points, n),
        }),
        Data::Sum(s) => Data::Sum(Sum {
            data_points: front(&mut s.data_points, n),
            aggregation_temporality: s.aggregation_temporality,
            is_monotonic: s.is_monotonic,
        }),
        Data::Histogram(h) => Data::Histogram(Histogram {
            data_points: front(&mut h.data_points, n),
            aggregation_temporality: h.aggregation_temporality,
        }),
        Data::ExponentialHistogram(h) => Data::ExponentialHistogram(ExponentialHistogram {
            data_points: front(&mut h.data_points, n),
            aggregation_temporality: h.aggregation_temporality,
        }),
        Data::Summary(s) => Data::Summary(Summary {
            data_points: front(&mut s.data_points, n),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ComponentId;
    use crate::extensions::Extensions;
    use crate::pipeline::consumer::testing::Collect;
    use crate::pipeline::BatchNotifier;
    use crate::telemetry::Telemetry;
    use opentelemetry_proto::tonic::common::v1::{
        any_value, AnyValue, InstrumentationScope, KeyValue,
    };
    use opentelemetry_proto::tonic::logs::v1::LogRecord;
    use opentelemetry_proto::tonic::metrics::v1::NumberDataPoint;
    use opentelemetry_proto::tonic::resource::v1::Resource;
    use tokio_util::sync::CancellationToken;

    fn ctx() -> BuildContext {
        BuildContext {
            id: ComponentId::new("batch", None),
            telemetry: Telemetry::noop(),
            extensions: Arc::new(Extensions::default()),
            shutdown: CancellationToken::new(),
        }
    }

    fn kv(k: &str, v: &str) -> KeyValue {
        KeyValue {
            key: k.to_string(),
            value: Some(AnyValue {
                value: Some(any_value::Value::StringValue(v.to_string())),
            }),
            ..Default::default()
        }
    }

    /// One resource (`host.name` = `host`) with one scope per entry of `scopes`,
    /// each holding that many records.
    fn logs(host: &str, scopes: &[usize]) -> Payload {
        Payload::Logs(vec![ResourceLogs {
            resource: Some(Resource {
                attributes: vec![kv("host.name", host)],
                ..Default::default()
            }),
            scope_logs: scopes
                .iter()
                .enumerate()
                .map(|(i, &n)| ScopeLogs {
                    scope: Some(InstrumentationScope {
                        name: format!("scope{i}"),
                        ..Default::default()
                    }),
                    log_records: (0..n)
                        .map(|j| LogRecord {
                            time_unix_nano: j as u64,
                            ..Default::default()
                        })
                        .collect(),
                    schema_url: String::new(),
                })
                .collect(),
            schema_url: "https://opentelemetry.io/schemas/1.26.0".to_string(),
        }])
    }

    /// The `host.name` of a batch's first resource (logs).
    fn host(batch: &Batch) -> String {
        let Payload::Logs(rl) = &*batch.payload else {
            return String::new();
        };
        rl.first()
            .and_then(|r| r.resource.as_ref())
            .and_then(|r| r.attributes.iter().find(|kv| kv.key == "host.name"))
            .and_then(|kv| match kv.value.as_ref()?.value.as_ref()? {
                any_value::Value::StringValue(s) => Some(s.clone()),
                _ => None,
            })
            .unwrap_or_default()
    }

    fn config(size: usize, max: usize, timeout: Duration) -> BatchConfig {
        BatchConfig {
            send_batch_size: size,
            send_batch_max_size: max,
            timeout: GoDuration(timeout),
            ..BatchConfig::default()
        }
    }

    #[test]
    fn metadata_keys_are_refused_with_the_reason() {
        let c: BatchConfig = serde_json::from_value(serde_json::json!({
            "metadata_keys": ["X-Tenant-Id"], "metadata_cardinality_limit": 10
        }))
        .expect("parses");
        let err = c
            .validate()
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            err.contains("metadata_keys") && err.contains("include_metadata"),
            "{err}"
        );
        let limit_only: BatchConfig =
            serde_json::from_value(serde_json::json!({"metadata_cardinality_limit": 10}))
                .expect("parses");
        assert!(limit_only.validate().is_ok());
    }

    #[test]
    fn defaults_and_validation() {
        let c = BatchConfig::default();
        assert_eq!((c.send_batch_size, c.send_batch_max_size), (8192, 0));
        assert_eq!(c.timeout, GoDuration::from_millis(200));
        assert!(c.validate().is_ok());
        let bad = config(100, 10, Duration::from_secs(1));
        assert_eq!(
            bad.validate().err().map(|e| e.to_string()).as_deref(),
            Some("send_batch_max_size: must be greater or equal to send_batch_size")
        );
        let parsed: BatchConfig =
            serde_json::from_value(serde_json::json!({"send_batch_size": 10, "timeout": "1s"}))
                .expect("valid");
        assert_eq!(parsed, config(10, 0, Duration::from_secs(1)));
        assert!(serde_json::from_value::<BatchConfig>(serde_json::json!({"max_size": 1})).is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn flushes_when_send_batch_size_is_reached() {
        let (collect, mut out) = Collect::new(None);
        let (consumer, task) = build(
            &config(10, 0, Duration::from_secs(3600)),
            &ctx(),
            Signal::Logs,
            collect,
        )
        .expect("build");
        consumer
            .consume(Batch::new(logs("a", &[4])))
            .await
            .expect("consume");
        consumer
            .consume(Batch::new(logs("b", &[4])))
            .await
            .expect("consume");
        tokio::task::yield_now().await;
        assert!(out.try_recv().is_err(), "8 < 10 items: nothing sent yet");
        consumer
            .consume(Batch::new(logs("c", &[3])))
            .await
            .expect("consume");
        let got = tokio::time::timeout(Duration::from_secs(1), out.recv())
            .await
            .expect("a size flush, well before the 1h timeout")
            .expect("batch");
        assert_eq!(got.item_count(), 11);
        match &*got.payload {
            Payload::Logs(rl) => assert_eq!(rl.len(), 3),
            Payload::Metrics(_) => panic!("logs expected"),
        }
        drop(consumer);
        task.expect("task").await.expect("join");
    }

    #[tokio::test(start_paused = true)]
    async fn flushes_after_the_timeout() {
        let (collect, mut out) = Collect::new(None);
        let (consumer, task) = build(
            &config(1000, 0, Duration::from_millis(200)),
            &ctx(),
            Signal::Logs,
            collect,
        )
        .expect("build");
        let start = Instant::now();
        consumer
            .consume(Batch::new(logs("a", &[2])))
            .await
            .expect("consume");
        tokio::time::sleep(Duration::from_millis(150)).await;
        consumer
            .consume(Batch::new(logs("b", &[3])))
            .await
            .expect("consume");
        let got = out.recv().await.expect("batch");
        assert_eq!(got.item_count(), 5);
        // Paused time: exactly the timeout after the first item, not the second.
        assert_eq!(start.elapsed(), Duration::from_millis(200));
        drop(consumer);
        task.expect("task").await.expect("join");
        assert!(
            out.recv().await.is_none(),
            "nothing else, and `next` dropped"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn urgent_batch_goes_alone_then_everything_buffered() {
        let (collect, mut out) = Collect::new(None);
        let (consumer, _task) = build(
            &config(1000, 0, Duration::from_secs(3600)),
            &ctx(),
            Signal::Logs,
            collect,
        )
        .expect("build");
        let start = Instant::now();
        consumer
            .consume(Batch::new(logs("a", &[2])))
            .await
            .expect("consume");
        consumer
            .consume(Batch::new(logs("oom", &[1])).urgent())
            .await
            .expect("consume");
        let got = out.recv().await.expect("batch");
        assert_eq!(start.elapsed(), Duration::ZERO);
        assert_eq!(
            got.item_count(),
            1,
            "the urgent data goes first, in a request of its own"
        );
        assert!(got.urgent);
        assert_eq!(host(&got), "oom");
        let got = out.recv().await.expect("batch");
        assert_eq!(start.elapsed(), Duration::ZERO);
        assert_eq!(got.item_count(), 2, "what was buffered goes right after");
        assert_eq!(host(&got), "a");
    }

    /// Refuses everything.
    struct RefuseAll;

    #[async_trait]
    impl Consumer for RefuseAll {
        async fn consume(&self, _batch: Batch) -> Result<(), ConsumeError> {
            Err(ConsumeError::Refused {
                reason: "full".to_string(),
                retry_after: None,
            })
        }
    }

    /// An urgent batch the next component refuses is dropped as the task's
    /// own batches are (its acknowledgement fails); the caller is not asked
    /// to offer it again.
    #[tokio::test(start_paused = true)]
    async fn a_refused_urgent_batch_is_dropped_not_handed_back() {
        let (consumer, _task) = build(
            &config(1000, 0, Duration::from_secs(1)),
            &ctx(),
            Signal::Logs,
            Arc::new(RefuseAll),
        )
        .expect("build");
        let (finalizer, status) = BatchNotifier::new_pair();
        let batch = Batch::new(logs("oom", &[1]))
            .urgent()
            .with_finalizers(Finalizers::new(finalizer));
        assert_eq!(consumer.consume(batch).await, Ok(()));
        assert_eq!(status.await.ok(), Some(DeliveryStatus::Failed));
    }

    /// Holds every ordinary batch until released; urgent ones pass.
    struct GateBulk {
        entered: Arc<Notify>,
        release: Arc<tokio::sync::Semaphore>,
        next: DynConsumer,
    }

    #[async_trait]
    impl Consumer for GateBulk {
        async fn consume(&self, batch: Batch) -> Result<(), ConsumeError> {
            if !batch.urgent {
                self.entered.notify_one();
                let _open = self.release.acquire().await;
            }
            self.next.consume(batch).await
        }
    }

    /// An urgent batch goes past the task: neither behind the send the task
    /// is stuck in (a slow `next`) nor behind the batches queued in the
    /// channel. Once that send is done, everything offered before the urgent
    /// batch goes at once, without waiting for the timeout.
    #[tokio::test(start_paused = true)]
    async fn urgent_batch_goes_past_a_blocked_send_and_the_queued_batches() {
        let (collect, mut out) = Collect::new(None);
        let entered = Arc::new(Notify::new());
        let release = Arc::new(tokio::sync::Semaphore::new(0));
        let gate: DynConsumer = Arc::new(GateBulk {
            entered: Arc::clone(&entered),
            release: Arc::clone(&release),
            next: collect,
        });
        let (consumer, _task) = build(
            &config(1000, 0, Duration::from_secs(3600)),
            &ctx(),
            Signal::Logs,
            gate,
        )
        .expect("build");
        let start = Instant::now();
        consumer
            .consume(Batch::new(logs("bulk", &[1000])))
            .await
            .expect("consume");
        entered.notified().await;
        // The task is stuck sending; the channel fills behind it.
        for _ in 0..channel_capacity() {
            consumer
                .consume(Batch::new(logs("queued", &[1])))
                .await
                .expect("consume");
        }
        consumer
            .consume(Batch::new(logs("oom", &[1])).urgent())
            .await
            .expect("the urgent batch is not held back");
        let first = out.recv().await.expect("batch");
        assert_eq!((host(&first), first.item_count()), ("oom".to_string(), 1));
        assert!(first.urgent);
        release.add_permits(1000);
        let bulk = out.recv().await.expect("batch");
        assert_eq!((host(&bulk), bulk.item_count()), ("bulk".to_string(), 1000));
        let queued = out.recv().await.expect("batch");
        assert_eq!(
            (host(&queued), queued.item_count()),
            ("queued".to_string(), channel_capacity()),
            "what was queued before the urgent batch goes right after"
        );
        assert!(!queued.urgent);
        assert_eq!(start.elapsed(), Duration::ZERO, "no timeout was waited for");
    }

    /// An urgent batch does not wait behind a full buffer of ordinary
    /// traffic, nor travel with it; what is buffered still goes at once,
    /// split as `send_batch_max_size` says, and the timer starts afresh.
    #[tokio::test(start_paused = true)]
    async fn urgent_batch_is_not_bundled_with_bulk_traffic() {
        let (collect, mut out) = Collect::new(None);
        let (consumer, _task) = build(
            &config(10_000, 10_000, Duration::from_millis(200)),
            &ctx(),
            Signal::Logs,
            collect,
        )
        .expect("build");
        for _ in 0..9 {
            consumer
                .consume(Batch::new(logs("bulk", &[1000])))
                .await
                .expect("consume");
        }
        consumer
            .consume(Batch::new(logs("oom", &[1])).urgent())
            .await
            .expect("consume");
        let first = out.recv().await.expect("batch");
        assert_eq!((host(&first), first.item_count()), ("oom".to_string(), 1));
        assert!(first.urgent);
        let second = out.recv().await.expect("batch");
        assert_eq!(
            (host(&second), second.item_count()),
            ("bulk".to_string(), 9000)
        );
        assert!(!second.urgent);
        // The buffer is empty: the next item waits a full timeout.
        let start = Instant::now();
        consumer
            .consume(Batch::new(logs("bulk", &[1])))
            .await
            .expect("consume");
        let third = out.recv().await.expect("batch");
        assert_eq!(third.item_count(), 1);
        assert_eq!(start.elapsed(), Duration::from_millis(200));
    }

    #[tokio::test(start_paused = true)]
    async fn flushes_what_is_buffered_when_the_input_closes() {
        let (collect, mut out) = Collect::new(None);
        let (consumer, task) = build(
            &config(1000, 0, Duration::from_secs(3600)),
            &ctx(),
            Signal::Logs,
            collect,
        )
        .expect("build");
        consumer
            .consume(Batch::new(logs("a", &[7])))
            .await
            .expect("consume");
        drop(consumer);
        task.expect("task").await.expect("join");
        assert_eq!(out.recv().await.expect("flushed at close").item_count(), 7);
        assert!(out.recv().await.is_none());
    }

    fn resource_name(rl: &ResourceLogs) -> String {
        match rl
            .resource
            .as_ref()
            .and_then(|r| r.attributes.first())
            .and_then(|a| a.value.as_ref())
        {
            Some(AnyValue {
                value: Some(any_value::Value::StringValue(s)),
            }) => s.clone(),
            _ => String::new(),
        }
    }

    #[test]
    fn split_logs_keeps_every_record_with_its_resource_and_scope() {
        let mut input = logs("a", &[5, 0, 2]);
        input.append(logs("b", &[4])).expect("same signal");
        let pieces = split_payload(input.clone(), 4);
        let counts: Vec<usize> = pieces.iter().map(Payload::item_count).collect();
        assert_eq!(counts, vec![4, 4, 3]);
        // Reassemble (resource, scope, record time) triples and compare.
        let flatten = |p: &Payload| -> Vec<(String, String, u64)> {
            let Payload::Logs(rls) = p else {
                return Vec::new();
            };
            let mut v = Vec::new();
            for rl in rls {
                for sl in &rl.scope_logs {
                    for r in &sl.log_records {
                        let scope = sl
                            .scope
                            .as_ref()
                            .map(|s| s.name.clone())
                            .unwrap_or_default();
                        v.push((resource_name(rl), scope, r.time_unix_nano));
                    }
                }
            }
            v
        };
        let joined: Vec<_> = pieces.iter().flat_map(&flatten).collect();
        assert_eq!(joined, flatten(&input));
        // The empty scope travelled along; resource schema URL is kept.
        let Payload::Logs(first) = &pieces[1] else {
            panic!("logs")
        };
        assert_eq!(
            first[0].schema_url,
            "https://opentelemetry.io/schemas/1.26.0"
        );
        let scopes: Vec<_> = first[0]
            .scope_logs
            .iter()
            .map(|s| s.scope.as_ref().map(|s| s.name.as_str()).unwrap_or(""))
            .collect();
        assert_eq!(scopes, vec!["scope0", "scope1", "scope2"]);
        assert_eq!(
            first.iter().map(resource_name).collect::<Vec<_>>(),
            vec!["a", "b"]
        );
    }

    fn gauge_metrics(points_per_metric: &[usize]) -> Payload {
        Payload::Metrics(vec![ResourceMetrics {
            resource: Some(Resource {
                attributes: vec![kv("host.name", "h")],
                ..Default::default()
            }),
            scope_metrics: vec![ScopeMetrics {
                scope: Some(InstrumentationScope {
                    name: "hostmetrics".to_string(),
                    ..Default::default()
                }),
                metrics: points_per_metric
                    .iter()
                    .enumerate()
                    .map(|(i, &n)| Metric {
                        name: format!("m{i}"),
                        unit: "By".to_string(),
                        data: Some(Data::Sum(Sum {
                            data_points: (0..n)
                                .map(|j| NumberDataPoint {
                                    time_unix_nano: j as u64,
                                    ..Default::default()
                                })
                                .collect(),
                            aggregation_temporality: 2,
                            is_monotonic: true,
                        })),
                        ..Default::default()
                    })
                    .collect(),
                schema_url: String::new(),
            }],
            schema_url: String::new(),
        }])
    }

    #[test]
    fn split_metrics_keeps_metric_metadata() {
        let input = gauge_metrics(&[3, 5, 1]);
        let pieces = split_payload(input.clone(), 3);
        assert_eq!(
            pieces.iter().map(Payload::item_count).collect::<Vec<_>>(),
            vec![3, 3, 3]
        );
        let flatten = |p: &Payload| -> Vec<(String, String, i32, bool, u64)> {
            let Payload::Metrics(rms) = p else {
                return Vec::new();
            };
            let mut v = Vec::new();
            for rm in rms {
                for sm in &rm.scope_metrics {
                    for m in &sm.metrics {
                        if let Some(Data::Sum(s)) = &m.data {
                            for dp in &s.data_points {
                                v.push((
                                    m.name.clone(),
                                    m.unit.clone(),
                                    s.aggregation_temporality,
                                    s.is_monotonic,
                                    dp.time_unix_nano,
                                ));
                            }
                        }
                    }
                }
            }
            v
        };
        let joined: Vec<_> = pieces.iter().flat_map(&flatten).collect();
        assert_eq!(joined, flatten(&input));
        let Payload::Metrics(second) = &pieces[1] else {
            panic!("metrics")
        };
        let names: Vec<_> = second[0].scope_metrics[0]
            .metrics
            .iter()
            .map(|m| m.name.as_str())
            .collect();
        assert_eq!(names, vec!["m1"]);
        assert_eq!(
            second[0].scope_metrics[0]
                .scope
                .as_ref()
                .map(|s| s.name.as_str()),
            Some("hostmetrics")
        );
    }

    #[tokio::test(start_paused = true)]
    async fn max_size_splits_and_every_share_settles() {
        let (collect, mut out) = Collect::new(Some(DeliveryStatus::Delivered));
        let (consumer, task) = build(
            &config(5, 5, Duration::from_secs(3600)),
            &ctx(),
            Signal::Logs,
            collect,
        )
        .expect("build");
        let (f1, rx1) = BatchNotifier::new_pair();
        let (f2, rx2) = BatchNotifier::new_pair();
        consumer
            .consume(Batch::new(logs("a", &[3])).with_finalizers(Finalizers::new(f1)))
            .await
            .expect("consume");
        consumer
            .consume(Batch::new(logs("b", &[9])).with_finalizers(Finalizers::new(f2)))
            .await
            .expect("consume");
        // 12 items: two pieces of 5 go on the size trigger, 2 stay buffered.
        let a = out.recv().await.expect("piece");
        let b = out.recv().await.expect("piece");
        assert_eq!((a.item_count(), b.item_count()), (5, 5));
        tokio::task::yield_now().await;
        assert!(
            out.try_recv().is_err(),
            "the short remainder waits for the timeout"
        );
        drop(consumer);
        task.expect("task").await.expect("join");
        let c = out.recv().await.expect("remainder flushed at close");
        assert_eq!(c.item_count(), 2);
        assert_eq!(rx1.await.ok(), Some(DeliveryStatus::Delivered));
        assert_eq!(rx2.await.ok(), Some(DeliveryStatus::Delivered));
    }

    #[tokio::test(start_paused = true)]
    async fn finalizers_fail_when_downstream_refuses() {
        struct Refuse;
        #[async_trait]
        impl Consumer for Refuse {
            async fn consume(&self, _batch: Batch) -> Result<(), ConsumeError> {
                Err(ConsumeError::refused("full"))
            }
        }
        let (consumer, task) = build(
            &config(1, 0, Duration::from_secs(1)),
            &ctx(),
            Signal::Logs,
            Arc::new(Refuse),
        )
        .expect("build");
        let (f, rx) = BatchNotifier::new_pair();
        consumer
            .consume(Batch::new(logs("a", &[1])).with_finalizers(Finalizers::new(f)))
            .await
            .expect("the batch processor itself takes it");
        assert_eq!(rx.await.ok(), Some(DeliveryStatus::Failed));
        drop(consumer);
        task.expect("task").await.expect("join");
    }

    #[tokio::test]
    async fn wrong_signal_is_rejected() {
        let (collect, _out) = Collect::new(None);
        let (consumer, _task) =
            build(&BatchConfig::default(), &ctx(), Signal::Metrics, collect).expect("build");
        let err = consumer.consume(Batch::new(logs("a", &[1]))).await.err();
        assert!(matches!(err, Some(ConsumeError::Permanent(_))));
    }
}
