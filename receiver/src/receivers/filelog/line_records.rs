//! LogRecords and the `oom.log.matches` counter.

use std::path::Path;
use std::time::Duration;

use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
use opentelemetry_proto::tonic::logs::v1::LogRecord;
use opentelemetry_proto::tonic::metrics::v1::ResourceMetrics;
use tokio_util::sync::CancellationToken;

use super::config::FilelogReceiverConfig;
use super::metrics::OOM_LOG_MATCHES;
use super::multiline::Assembled;
use super::SharedMatchCounts;
use crate::clock::unix_now_nanos;
use crate::metric_catalog::MetricsBuilder;
use crate::pipeline::data::{kv, kv_str, scoped_metrics};
use crate::pipeline::{Batch, DynConsumer, Payload};

pub const SCOPE_NAME: &str = "oomscope/filelog";

/// `log.file.name` and `log.file.path`, as configured.
pub fn file_attributes(cfg: &FilelogReceiverConfig, path: &Path) -> Vec<KeyValue> {
    let mut attributes = Vec::new();
    if cfg.include_file_name {
        if let Some(name) = path.file_name() {
            attributes.push(kv_str("log.file.name", &name.to_string_lossy()));
        }
    }
    if cfg.include_file_path {
        attributes.push(kv_str("log.file.path", &path.to_string_lossy()));
    }
    attributes
}

/// `identity`: attributes of the file's container (see [`super::container`]).
pub fn log_record(
    cfg: &FilelogReceiverConfig,
    path: Option<&Path>,
    identity: &[KeyValue],
    a: Assembled,
) -> LogRecord {
    let mut attributes = identity.to_vec();
    if let Some(path) = path {
        attributes.extend(file_attributes(cfg, path));
    }
    if let Some(stream) = a.stream {
        attributes.push(kv_str("log.iostream", stream.as_str()));
    }
    let (mut severity_number, mut severity_text) = (0, String::new());
    if let Some(m) = a.matched {
        attributes.push(kv_str("oom.pattern", &m.pattern));
        attributes.push(kv_str("oom.runtime", &m.runtime));
        for (k, v) in m.attributes {
            attributes.push(kv(&k, v.into()));
        }
        severity_number = m.severity_number;
        severity_text = m.severity_text;
    }
    if a.truncated {
        attributes.push(KeyValue {
            key: "oomscope.log.truncated".to_string(),
            value: Some(AnyValue {
                value: Some(any_value::Value::BoolValue(true)),
            }),
            ..Default::default()
        });
    }
    LogRecord {
        time_unix_nano: a.time_unix_nano,
        observed_time_unix_nano: unix_now_nanos(),
        severity_number,
        severity_text,
        body: Some(AnyValue {
            value: Some(any_value::Value::StringValue(a.text)),
        }),
        attributes,
        ..Default::default()
    }
}

/// `oom.log.matches` (cumulative since `start_unix_nano`); `None` before
/// the first match.
pub fn matches_metric(counts: &SharedMatchCounts, start_unix_nano: u64) -> Option<ResourceMetrics> {
    let mut b = MetricsBuilder::new(unix_now_nanos());
    counts
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .record(&mut b, start_unix_nano);
    if b.is_empty() {
        return None;
    }
    Some(scoped_metrics(SCOPE_NAME, None, b.into_metrics()))
}

/// Reports the counter every `interval` until shutdown (and once more then).
pub async fn report_matches(
    to: DynConsumer,
    counts: SharedMatchCounts,
    interval: Duration,
    shutdown: CancellationToken,
) {
    let start = unix_now_nanos();
    // On the shared grid: reported with the other periodic data.
    let mut tick = crate::clock::grid_interval(interval);
    loop {
        let stop = tokio::select! {
            () = shutdown.cancelled() => true,
            _ = tick.tick() => false,
        };
        if let Some(rm) = matches_metric(&counts, start) {
            // Counters are cumulative: a refused report is superseded by the next.
            let _ = to
                .consume(Batch::new(Payload::Metrics(vec![rm])))
                .await
                .map_err(|e| {
                    tracing::debug!(error = %e, metric = OOM_LOG_MATCHES.name, "report refused")
                });
        }
        if stop {
            return;
        }
    }
}
