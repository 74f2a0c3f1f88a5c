//! Shared fixtures (a scripted client, batches, contexts), and the tests of
//! what every mode shares: the retry loop, settling, and `spawn` itself.
//! The other tests live next to the code they test and use these fixtures.

use std::collections::{BTreeMap, VecDeque};
use std::path::Path;

use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use tokio::sync::{watch, Semaphore};

use super::*;
use crate::config::GoDuration;
use crate::extensions::file_storage::{FileStorage, FileStorageConfig};
use crate::extensions::Extensions;
use crate::pipeline::{Batch, BatchNotifier, BatchStatusReceiver};
use crate::telemetry::Telemetry;

/// Generous bound so that a broken test fails instead of hanging; with
/// paused time it costs nothing.
pub(super) const HANG: Duration = Duration::from_secs(600);

/// The same for tests in real time.
pub(super) const REAL_HANG: Duration = Duration::from_secs(60);

pub(super) enum Step {
    Reply(Result<ExportResponse, ExportError>),
    /// Takes this long, then succeeds.
    Slow(Duration),
}

/// An [`ExportClient`] that plays a script, then `otherwise`.
pub(super) struct ScriptedClient {
    script: Mutex<VecDeque<Step>>,
    otherwise: Option<ExportError>,
    /// When set, every call waits for a permit first (a blocked backend).
    gate: Option<Arc<Semaphore>>,
    calls: Mutex<Vec<(Instant, Payload)>>,
    call_count: watch::Sender<usize>,
    pub(super) shut_down: AtomicBool,
    /// Claims to send protobuf ([`ExportClient::sends_protobuf`]).
    pub(super) protobuf: AtomicBool,
    /// Takes the urgent lane ([`ExportClient::uses_urgent_lane`]).
    pub(super) urgent_lane: AtomicBool,
    /// The bodies [`ExportClient::export_encoded`] was given.
    encoded_bodies: Mutex<Vec<bytes::Bytes>>,
    /// Whether each of those was marked urgent.
    encoded_urgent: Mutex<Vec<bool>>,
    /// The thread each call ran on, by name.
    threads: Mutex<Vec<Option<String>>>,
}

impl ScriptedClient {
    pub(super) fn new(
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
            protobuf: AtomicBool::new(false),
            urgent_lane: AtomicBool::new(false),
            encoded_bodies: Mutex::new(Vec::new()),
            encoded_urgent: Mutex::new(Vec::new()),
            threads: Mutex::new(Vec::new()),
        })
    }

    pub(super) fn ok() -> Arc<Self> {
        Self::new(Vec::new(), None, None)
    }

    pub(super) fn calls(&self) -> Vec<(Instant, Payload)> {
        self.calls.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub(super) fn markers(&self) -> Vec<String> {
        self.calls().iter().map(|(_, p)| marker(p)).collect()
    }

    pub(super) async fn wait_calls(&self, n: usize) {
        self.wait_calls_for(n, HANG).await;
    }

    /// [`Self::wait_calls`] in real time (where the calls run on another
    /// runtime, the urgent lane): a shorter bound.
    pub(super) async fn wait_calls_for(&self, n: usize, bound: Duration) {
        let mut rx = self.call_count.subscribe();
        let reached = tokio::time::timeout(bound, rx.wait_for(|c| *c >= n)).await;
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
        self.threads
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(std::thread::current().name().map(str::to_owned));
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

    fn sends_protobuf(&self) -> bool {
        self.protobuf.load(Ordering::SeqCst)
    }

    fn uses_urgent_lane(&self) -> bool {
        self.urgent_lane.load(Ordering::SeqCst)
    }

    /// Keeps the body, then plays the script as `export` does.
    async fn export_encoded(
        &self,
        request: &EncodedRequest,
    ) -> Result<ExportResponse, ExportError> {
        self.encoded_bodies
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(request.body());
        self.encoded_urgent
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(request.is_urgent());
        let payload = request.decode().map_err(ExportError::permanent)?;
        self.export(&Arc::new(payload)).await
    }

    async fn shutdown(&self) {
        self.shut_down.store(true, Ordering::SeqCst);
    }
}

impl ScriptedClient {
    pub(super) fn encoded_urgent(&self) -> Vec<bool> {
        self.encoded_urgent
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// How many calls ran on the urgent lane's thread.
    pub(super) fn calls_on_the_lane(&self) -> usize {
        let threads = self.threads.lock().unwrap_or_else(|p| p.into_inner());
        threads
            .iter()
            .filter(|t| t.as_deref() == Some(crate::urgent_lane::THREAD_NAME))
            .count()
    }

    pub(super) fn encoded_bodies(&self) -> Vec<bytes::Bytes> {
        self.encoded_bodies
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

pub(super) fn log_payload(marker: &str) -> Payload {
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

pub(super) fn batch(marker: &str) -> (Batch, BatchStatusReceiver) {
    let (finalizer, status) = BatchNotifier::new_pair();
    (
        Batch::new(log_payload(marker)).with_finalizers(Finalizers::new(finalizer)),
        status,
    )
}

pub(super) async fn status(rx: BatchStatusReceiver) -> DeliveryStatus {
    match tokio::time::timeout(HANG, rx).await {
        Ok(Ok(s)) => s,
        other => panic!("no delivery status: {other:?}"),
    }
}

fn storage_id() -> ComponentId {
    ComponentId::new("file_storage", Some("queue"))
}

pub(super) fn context(storage_dir: Option<&Path>) -> BuildContext {
    let mut storages = BTreeMap::new();
    if let Some(dir) = storage_dir {
        let cfg = FileStorageConfig {
            directory: dir.to_path_buf(),
            ..FileStorageConfig::default()
        };
        let storage = FileStorage::open(&cfg, &storage_id()).unwrap_or_else(|e| panic!("{e:#}"));
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

/// [`context`] with its own metrics gathered in the returned registry.
pub(super) fn metered_context(storage_dir: Option<&Path>) -> (BuildContext, prometheus::Registry) {
    let registry = prometheus::Registry::new();
    let provider = opentelemetry_sdk::metrics::SdkMeterProvider::builder()
        .with_reader(
            crate::telemetry::prometheus_reader(registry.clone()).unwrap_or_else(|e| panic!("{e}")),
        )
        .build();
    let ctx = BuildContext {
        telemetry: Telemetry::new(provider, crate::config::MetricsLevel::Basic),
        ..context(storage_dir)
    };
    (ctx, registry)
}

/// `otelcol_exporter_queue_size` (or `_capacity`) of `data_type`.
pub(super) fn queue_gauge(registry: &prometheus::Registry, name: &str, data_type: &str) -> i64 {
    let families = registry.gather();
    let family = families
        .iter()
        .find(|f| f.name() == name)
        .unwrap_or_else(|| panic!("{name} missing"));
    let series = family.get_metric().iter().find(|m| {
        m.get_label()
            .iter()
            .any(|l| l.name() == "data_type" && l.value() == data_type)
    });
    series.map_or_else(
        || panic!("{name} has no data_type {data_type}"),
        |m| m.get_gauge().get_value() as i64,
    )
}

/// The serialized size of one [`log_payload`] request (the `bytes` sizer).
pub(super) fn log_request_bytes() -> usize {
    usize::try_from(RequestSize::of(&log_payload("1")).bytes).unwrap_or(usize::MAX)
}

pub(super) fn settings(queue: QueueConfig) -> ExporterSettings {
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
pub(super) fn untimed(queue: QueueConfig) -> ExporterSettings {
    ExporterSettings {
        timeout: None,
        ..settings(queue)
    }
}

pub(super) fn memory_queue(num_consumers: usize, queue_size: usize) -> QueueConfig {
    QueueConfig {
        num_consumers,
        queue_size,
        ..QueueConfig::default()
    }
}

pub(super) fn persistent_queue(num_consumers: usize, queue_size: usize) -> QueueConfig {
    QueueConfig {
        storage: Some(storage_id()),
        ..memory_queue(num_consumers, queue_size)
    }
}

pub(super) async fn start(
    ctx: &BuildContext,
    settings: ExporterSettings,
    client: &Arc<ScriptedClient>,
) -> (DynConsumer, JoinHandle<()>) {
    let client: Arc<dyn ExportClient> = client.clone();
    spawn(ctx, settings, client)
        .await
        .unwrap_or_else(|e| panic!("spawn: {e:#}"))
}

pub(super) async fn consume(consumer: &DynConsumer, marker: &str) -> BatchStatusReceiver {
    let (b, rx) = batch(marker);
    let consumed = tokio::time::timeout(HANG, consumer.consume(b)).await;
    assert!(
        matches!(consumed, Ok(Ok(()))),
        "consume {marker}: {consumed:?}"
    );
    rx
}

pub(super) async fn stop(consumer: DynConsumer, handle: JoinHandle<()>) {
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
