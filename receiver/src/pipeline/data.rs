//! The unit of data that flows through a pipeline: OTLP wire types, unchanged.
//!
//! Internal data *is* the OTLP model (opentelemetry-proto's prost types), so the
//! OTLP receiver is a pass-through and exporters need no conversion.

use std::fmt;
use std::sync::Arc;

use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::metrics::v1::{
    metric::Data, Metric, ResourceMetrics, ScopeMetrics,
};
use opentelemetry_proto::tonic::resource::v1::Resource;

use super::ack::Finalizers;

/// A telemetry signal; pipelines are per signal.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Signal {
    Logs,
    Metrics,
}

impl Signal {
    pub fn as_str(self) -> &'static str {
        match self {
            Signal::Logs => "logs",
            Signal::Metrics => "metrics",
        }
    }

    /// The collector's word for one item of this signal, used in metric names
    /// such as `otelcol_receiver_accepted_log_records`.
    pub fn item_name(self) -> &'static str {
        match self {
            Signal::Logs => "log_records",
            Signal::Metrics => "metric_points",
        }
    }
}

impl fmt::Display for Signal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// OTLP data of one signal.
#[derive(Clone, Debug, PartialEq)]
pub enum Payload {
    Logs(Vec<ResourceLogs>),
    Metrics(Vec<ResourceMetrics>),
}

impl Payload {
    pub fn signal(&self) -> Signal {
        match self {
            Payload::Logs(_) => Signal::Logs,
            Payload::Metrics(_) => Signal::Metrics,
        }
    }

    pub fn empty(signal: Signal) -> Self {
        match signal {
            Signal::Logs => Payload::Logs(Vec::new()),
            Signal::Metrics => Payload::Metrics(Vec::new()),
        }
    }

    /// Log records, or metric data points (the collector's item counts).
    pub fn item_count(&self) -> usize {
        match self {
            Payload::Logs(rl) => log_record_count(rl),
            Payload::Metrics(rm) => data_point_count(rm),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.item_count() == 0
    }

    /// Moves `other`'s resources to the end of `self`. Both must be of one
    /// signal; otherwise nothing is moved and `other` is given back.
    pub fn append(&mut self, other: Payload) -> Result<(), Payload> {
        match (self, other) {
            (Payload::Logs(a), Payload::Logs(b)) => a.extend(b),
            (Payload::Metrics(a), Payload::Metrics(b)) => a.extend(b),
            (_, b) => return Err(b),
        }
        Ok(())
    }
}

pub fn log_record_count(resource_logs: &[ResourceLogs]) -> usize {
    resource_logs
        .iter()
        .flat_map(|rl| &rl.scope_logs)
        .map(|sl| sl.log_records.len())
        .sum()
}

/// Data points of one metric (0 when it has no data).
pub fn metric_point_count(metric: &Metric) -> usize {
    match &metric.data {
        Some(Data::Gauge(g)) => g.data_points.len(),
        Some(Data::Sum(s)) => s.data_points.len(),
        Some(Data::Histogram(h)) => h.data_points.len(),
        Some(Data::ExponentialHistogram(h)) => h.data_points.len(),
        Some(Data::Summary(s)) => s.data_points.len(),
        None => 0,
    }
}

pub fn data_point_count(resource_metrics: &[ResourceMetrics]) -> usize {
    resource_metrics
        .iter()
        .flat_map(|rm| &rm.scope_metrics)
        .flat_map(|sm| &sm.metrics)
        .map(metric_point_count)
        .sum()
}

/// What travels between components: data, the acknowledgement handles of the
/// receivers that produced it, and whether it must skip batching delays.
#[derive(Debug)]
pub struct Batch {
    /// Shared so that fan-out to several pipelines or exporters costs no copy;
    /// a processor that changes data clones only when it is shared
    /// (`Arc::make_mut`).
    pub payload: Arc<Payload>,
    pub finalizers: Finalizers,
    /// Urgent data (an OOM kill) is flushed by the batch processor at once
    /// instead of waiting for the batch timeout.
    pub urgent: bool,
}

impl Batch {
    pub fn new(payload: Payload) -> Self {
        Batch {
            payload: Arc::new(payload),
            finalizers: Finalizers::default(),
            urgent: false,
        }
    }

    pub fn with_finalizers(mut self, finalizers: Finalizers) -> Self {
        self.finalizers = finalizers;
        self
    }

    pub fn urgent(mut self) -> Self {
        self.urgent = true;
        self
    }

    pub fn signal(&self) -> Signal {
        self.payload.signal()
    }

    pub fn item_count(&self) -> usize {
        self.payload.item_count()
    }

    /// A copy for another branch of a fan-out: the payload is shared and each
    /// branch holds its own acknowledgement share.
    pub fn fork(&self) -> Batch {
        Batch {
            payload: Arc::clone(&self.payload),
            finalizers: self.finalizers.clone(),
            urgent: self.urgent,
        }
    }
}

/// An attribute.
pub fn kv(key: &str, value: any_value::Value) -> KeyValue {
    KeyValue {
        key: key.to_string(),
        value: Some(AnyValue { value: Some(value) }),
        ..Default::default()
    }
}

/// A string attribute.
pub fn kv_str(key: &str, value: &str) -> KeyValue {
    kv(key, any_value::Value::StringValue(value.to_string()))
}

/// An integer attribute.
pub fn kv_int(key: &str, value: i64) -> KeyValue {
    kv(key, any_value::Value::IntValue(value))
}

/// This agent's instrumentation scope `name` (e.g. `oomscope/oom`), at the
/// agent's version.
pub fn agent_scope(name: &str) -> InstrumentationScope {
    InstrumentationScope {
        name: name.to_string(),
        version: env!("CARGO_PKG_VERSION").to_string(),
        ..Default::default()
    }
}

/// A receiver's log records under one resource (none: the `resource`
/// processor adds the host's) and its scope `scope`.
pub fn scoped_logs(scope: &str, records: Vec<LogRecord>) -> ResourceLogs {
    ResourceLogs {
        resource: None,
        scope_logs: vec![ScopeLogs {
            scope: Some(agent_scope(scope)),
            log_records: records,
            ..Default::default()
        }],
        ..Default::default()
    }
}

/// A receiver's metrics under `resource` and its scope `scope`.
pub fn scoped_metrics(
    scope: &str,
    resource: Option<Resource>,
    metrics: Vec<Metric>,
) -> ResourceMetrics {
    ResourceMetrics {
        resource,
        scope_metrics: vec![ScopeMetrics {
            scope: Some(agent_scope(scope)),
            metrics,
            ..Default::default()
        }],
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::logs::v1::{LogRecord, ScopeLogs};
    use opentelemetry_proto::tonic::metrics::v1::{Gauge, NumberDataPoint, ScopeMetrics};

    #[test]
    fn append_of_another_signal_gives_the_data_back() {
        let mut logs = Payload::Logs(vec![ResourceLogs {
            scope_logs: vec![ScopeLogs {
                log_records: vec![LogRecord::default()],
                ..Default::default()
            }],
            ..Default::default()
        }]);
        let metrics = Payload::Metrics(vec![ResourceMetrics::default()]);
        assert_eq!(logs.append(metrics.clone()), Err(metrics));
        assert_eq!(logs.item_count(), 1);
        assert_eq!(logs.append(logs.clone()), Ok(()));
        assert_eq!(logs.item_count(), 2);
    }

    #[test]
    fn points_are_counted_per_metric() {
        let gauge = Metric {
            data: Some(Data::Gauge(Gauge {
                data_points: vec![NumberDataPoint::default(); 3],
            })),
            ..Default::default()
        };
        assert_eq!(metric_point_count(&gauge), 3);
        assert_eq!(metric_point_count(&Metric::default()), 0);
        let rm = ResourceMetrics {
            scope_metrics: vec![ScopeMetrics {
                metrics: vec![gauge.clone(), gauge],
                ..Default::default()
            }],
            ..Default::default()
        };
        assert_eq!(data_point_count(&[rm]), 6);
    }
}
