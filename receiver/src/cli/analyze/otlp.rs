//! `--otlp` / `--otlp-http`: the records go out through the project's own
//! `otlp_grpc` or `otlphttp` exporter (its client, retries and timeouts),
//! in batches, under a resource per host: `service.name=oomscope-analyze`
//! and `host.name` when the text names the host.

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::sync::Arc;

use opentelemetry_proto::tonic::common::v1::any_value;
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::resource::v1::Resource;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::component::{BuildContext, ExporterConfig};
use crate::config::{ComponentId, GoDuration};
use crate::exporters::helper::{QueueConfig, RetryConfig};
use crate::exporters::otlp_grpc::OtlpGrpcExporterConfig;
use crate::exporters::otlp_http::OtlpHttpExporterConfig;
use crate::extensions::Extensions;
use crate::pipeline::data::{agent_scope, kv_str};
use crate::pipeline::{Batch, DynConsumer, Payload};
use crate::telemetry::Telemetry;

/// `service.name` of what `analyze` sends.
pub const SERVICE_NAME: &str = "oomscope-analyze";
/// Records per request.
const BATCH_RECORDS: usize = 500;
/// Body bytes per request (a report's body is up to 256 KiB).
const BATCH_BYTES: usize = 4 << 20;
/// Runtime message ids remembered so that each is sent once.
const MAX_SENT_IDS: usize = 4096;

/// Where to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// OTLP/gRPC: `host:port` (TLS), `http://host:port` (plain text) or
    /// `https://host:port`, as the `otlp_grpc` exporter's `endpoint`.
    Grpc(String),
    /// OTLP/HTTP base URL, as the `otlphttp` exporter's `endpoint`.
    Http(String),
}

/// Collects records and sends them in batches.
pub struct OtlpSink {
    runtime: tokio::runtime::Runtime,
    consumer: Option<DynConsumer>,
    task: Option<JoinHandle<()>>,
    /// Records waiting, by host.
    pending: BTreeMap<Option<String>, Vec<LogRecord>>,
    pending_count: usize,
    pending_bytes: usize,
    sent_ids: HashSet<u64>,
    sent_order: VecDeque<u64>,
    /// Records sent (accepted by the endpoint).
    pub sent: u64,
    /// The first failure; nothing more is sent after it.
    pub error: Option<String>,
}

impl OtlpSink {
    /// Builds the exporter; fails on an invalid endpoint.
    pub fn new(endpoint: &Endpoint) -> anyhow::Result<OtlpSink> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        // A command, not an agent: a few quick retries, then it says so.
        let retry = RetryConfig {
            initial_interval: GoDuration::from_millis(500),
            max_interval: GoDuration::from_secs(2),
            max_elapsed_time: GoDuration::from_secs(10),
            ..RetryConfig::default()
        };
        let queue = QueueConfig {
            enabled: false,
            ..QueueConfig::default()
        };
        let (type_name, config): (&str, Box<dyn ExporterConfig>) = match endpoint {
            Endpoint::Grpc(endpoint) => (
                "otlp_grpc",
                Box::new(OtlpGrpcExporterConfig {
                    endpoint: endpoint.clone(),
                    retry_on_failure: retry,
                    sending_queue: queue,
                    ..OtlpGrpcExporterConfig::default()
                }),
            ),
            Endpoint::Http(endpoint) => (
                "otlp_http",
                Box::new(OtlpHttpExporterConfig {
                    endpoint: endpoint.clone(),
                    retry_on_failure: retry,
                    sending_queue: queue,
                    ..OtlpHttpExporterConfig::default()
                }),
            ),
        };
        config.validate().map_err(|e| anyhow::anyhow!("{e}"))?;
        let ctx = BuildContext {
            id: ComponentId::new(type_name, Some("analyze")),
            telemetry: Telemetry::noop(),
            extensions: Arc::new(Extensions::default()),
            shutdown: CancellationToken::new(),
        };
        let (consumer, task) = runtime.block_on(config.build(&ctx))?;
        Ok(OtlpSink {
            runtime,
            consumer: Some(consumer),
            task: Some(task),
            pending: BTreeMap::new(),
            pending_count: 0,
            pending_bytes: 0,
            sent_ids: HashSet::new(),
            sent_order: VecDeque::new(),
            sent: 0,
            error: None,
        })
    }

    /// Queues a record of `host`; sends when a batch is full.
    pub fn push(&mut self, host: Option<&str>, record: LogRecord) {
        if self.error.is_some() {
            return;
        }
        self.pending_bytes += body_bytes(&record);
        self.pending
            .entry(host.map(str::to_owned))
            .or_default()
            .push(record);
        self.pending_count += 1;
        if self.pending_count >= BATCH_RECORDS || self.pending_bytes >= BATCH_BYTES {
            self.flush();
        }
    }

    /// Whether runtime message `id` is new (it may be near several kills).
    pub fn first_time(&mut self, id: u64) -> bool {
        if !self.sent_ids.insert(id) {
            return false;
        }
        self.sent_order.push_back(id);
        if self.sent_order.len() > MAX_SENT_IDS {
            if let Some(old) = self.sent_order.pop_front() {
                self.sent_ids.remove(&old);
            }
        }
        true
    }

    fn flush(&mut self) {
        let pending = std::mem::take(&mut self.pending);
        let count = std::mem::take(&mut self.pending_count);
        self.pending_bytes = 0;
        if count == 0 || self.error.is_some() {
            return;
        }
        let Some(consumer) = &self.consumer else {
            return;
        };
        let resource_logs: Vec<ResourceLogs> = pending
            .into_iter()
            .map(|(host, records)| resource_logs(host.as_deref(), records))
            .collect();
        let batch = Batch::new(Payload::Logs(resource_logs));
        match self.runtime.block_on(consumer.consume(batch)) {
            Ok(()) => self.sent += count as u64,
            Err(e) => self.error = Some(e.to_string()),
        }
    }

    /// Sends what is left and closes the exporter: `Ok(records sent)`, or
    /// the first failure.
    pub fn finish(mut self) -> Result<u64, String> {
        self.flush();
        self.consumer = None;
        if let Some(task) = self.task.take() {
            let _ = self.runtime.block_on(task);
        }
        match self.error.take() {
            Some(error) => Err(error),
            None => Ok(self.sent),
        }
    }
}

fn body_bytes(record: &LogRecord) -> usize {
    match record.body.as_ref().and_then(|body| body.value.as_ref()) {
        Some(any_value::Value::StringValue(text)) => text.len(),
        _ => 0,
    }
}

fn resource_logs(host: Option<&str>, records: Vec<LogRecord>) -> ResourceLogs {
    let mut attributes = vec![kv_str("service.name", SERVICE_NAME)];
    if let Some(host) = host {
        attributes.push(kv_str("host.name", host));
    }
    ResourceLogs {
        resource: Some(Resource {
            attributes,
            ..Default::default()
        }),
        scope_logs: vec![ScopeLogs {
            scope: Some(agent_scope(SERVICE_NAME)),
            log_records: records,
            ..Default::default()
        }],
        ..Default::default()
    }
}
