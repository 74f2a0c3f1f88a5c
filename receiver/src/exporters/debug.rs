//! The `debug` exporter: prints what reaches it to stdout, like the
//! collector's debug exporter.
//!
//! - `basic`: one summary line per request
//!   (`Logs: 1 resource logs, 3 log records`).
//! - `normal`: one line per log record or data point.
//! - `detailed`: every field, in the collector's `otlptext` layout
//!   (`ResourceLog #0`, `Resource attributes:`, `LogRecord #0`, ...).
//!
//! Sampling follows the collector's: within each second the first
//! `sampling_initial` requests are printed, then every
//! `sampling_thereafter`-th.

use std::fmt::Write as _;
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use base64::Engine as _;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::logs::v1::ResourceLogs;
use opentelemetry_proto::tonic::metrics::v1::{
    exemplar, metric::Data, number_data_point, AggregationTemporality, ResourceMetrics,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use serde::Deserialize;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::helper::{
    ExportClient, ExportError, ExportResponse, ExporterSettings, QueueConfig, RetryConfig,
};
use crate::component::{
    BuildContext, ComponentConfig, ExporterConfig, ExporterFactory, Factory, Reference, Stability,
    StartFuture,
};
use crate::config::{from_node, ConfigError, Node, ValidationError};
use crate::pipeline::data::{data_point_count, log_record_count};
use crate::pipeline::{DynConsumer, Payload};

/// How much of each request is printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Verbosity {
    /// One summary line per request.
    #[default]
    Basic,
    /// One line per log record or data point.
    Normal,
    /// Every field.
    Detailed,
}

/// `debug` exporter configuration, with the collector's defaults.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DebugExporterConfig {
    /// `basic`, `normal` or `detailed`.
    pub verbosity: Verbosity,
    /// Requests printed per second before sampling starts.
    pub sampling_initial: u64,
    /// After that, every this many-th request per second is printed.
    pub sampling_thereafter: u64,
    /// Accepted for compatibility with collector configurations; output
    /// always goes to stdout.
    pub use_internal_logger: bool,
    /// The exporter helper's queue. One consumer by default, so that
    /// requests are printed in the order they arrive.
    pub sending_queue: QueueConfig,
}

impl Default for DebugExporterConfig {
    fn default() -> Self {
        DebugExporterConfig {
            verbosity: Verbosity::Basic,
            sampling_initial: 2,
            sampling_thereafter: 1,
            use_internal_logger: true,
            sending_queue: QueueConfig {
                num_consumers: 1,
                ..QueueConfig::default()
            },
        }
    }
}

impl ComponentConfig for DebugExporterConfig {
    fn validate(&self) -> Result<(), ValidationError> {
        if self.sampling_thereafter == 0 {
            return Err(ValidationError::at(
                "sampling_thereafter",
                "must be greater than zero",
            ));
        }
        self.sending_queue
            .validate()
            .map_err(|e| e.within("sending_queue"))
    }

    fn references(&self) -> Vec<Reference> {
        self.sending_queue.references()
    }
}

/// Makes `debug` exporters.
pub struct DebugExporterFactory;

impl Factory for DebugExporterFactory {
    fn type_names(&self) -> &'static [&'static str] {
        &["debug"]
    }

    fn stability(&self) -> Stability {
        Stability::Beta
    }

    fn description(&self) -> &'static str {
        "prints what passes to stdout (basic, normal or detailed), for trying out a pipeline"
    }
}

impl ExporterFactory for DebugExporterFactory {
    fn decode(&self, node: &Node) -> Result<Box<dyn ExporterConfig>, ConfigError> {
        Ok(Box::new(from_node::<DebugExporterConfig>(node)?))
    }
}

impl ExporterConfig for DebugExporterConfig {
    fn build<'a>(
        &'a self,
        ctx: &'a BuildContext,
    ) -> StartFuture<'a, (DynConsumer, JoinHandle<()>)> {
        Box::pin(build(self, ctx))
    }
}

pub async fn build(
    c: &DebugExporterConfig,
    ctx: &BuildContext,
) -> anyhow::Result<(DynConsumer, JoinHandle<()>)> {
    c.validate()
        .map_err(|e| anyhow::anyhow!("{}: {e}", ctx.id))?;
    let client = DebugClient::new(c, Box::new(std::io::stdout()));
    let settings = ExporterSettings {
        timeout: None,
        retry: RetryConfig::disabled(),
        queue: c.sending_queue.clone(),
    };
    super::helper::spawn(ctx, settings, Arc::new(client)).await
}

/// Prints requests to a writer (stdout; a buffer in tests).
pub(crate) struct DebugClient {
    verbosity: Verbosity,
    sampler: Mutex<Sampler>,
    /// Written on a blocking thread: stdout may block (a full pipe).
    out: Arc<Mutex<Box<dyn Write + Send>>>,
}

struct Sampler {
    initial: u64,
    thereafter: u64,
    window_start: Option<Instant>,
    seen: u64,
}

impl Sampler {
    /// Whether the next request is printed.
    fn admit(&mut self, now: Instant) -> bool {
        let new_window = self
            .window_start
            .is_none_or(|start| now.duration_since(start) >= Duration::from_secs(1));
        if new_window {
            self.window_start = Some(now);
            self.seen = 0;
        }
        self.seen += 1;
        self.seen <= self.initial
            || (self.seen - self.initial).is_multiple_of(self.thereafter.max(1))
    }
}

impl DebugClient {
    pub(crate) fn new(c: &DebugExporterConfig, out: Box<dyn Write + Send>) -> Self {
        DebugClient {
            verbosity: c.verbosity,
            sampler: Mutex::new(Sampler {
                initial: c.sampling_initial,
                thereafter: c.sampling_thereafter,
                window_start: None,
                seen: 0,
            }),
            out: Arc::new(Mutex::new(out)),
        }
    }
}

#[async_trait]
impl ExportClient for DebugClient {
    async fn export(&self, payload: &Arc<Payload>) -> Result<ExportResponse, ExportError> {
        let admitted = match self.sampler.lock() {
            Ok(mut s) => s.admit(Instant::now()),
            Err(poisoned) => poisoned.into_inner().admit(Instant::now()),
        };
        if !admitted {
            return Ok(ExportResponse::default());
        }
        let payload = Arc::clone(payload);
        let verbosity = self.verbosity;
        let out = Arc::clone(&self.out);
        // Rendering is CPU work and a write to stdout can block (a pipe
        // nobody reads): both off the async worker threads.
        let written = tokio::task::spawn_blocking(move || {
            let text = render(&payload, verbosity);
            let mut out = match out.lock() {
                Ok(o) => o,
                Err(poisoned) => poisoned.into_inner(),
            };
            out.write_all(text.as_bytes()).and_then(|()| out.flush())
        })
        .await;
        // A closed stdout is no reason to hold data back: report it, do not retry.
        match written {
            Ok(Ok(())) => Ok(ExportResponse::default()),
            Ok(Err(e)) => Err(ExportError::permanent(format!(
                "debug exporter: cannot write to stdout: {e}"
            ))),
            Err(e) => Err(ExportError::permanent(format!(
                "debug exporter: the write to stdout failed: {e}"
            ))),
        }
    }
}

/// The text printed for one request.
pub(crate) fn render(payload: &Payload, verbosity: Verbosity) -> String {
    let mut s = String::new();
    match payload {
        Payload::Logs(rls) => {
            let _ = writeln!(
                s,
                "Logs: {} resource logs, {} log records",
                rls.len(),
                log_record_count(rls)
            );
            match verbosity {
                Verbosity::Basic => {}
                Verbosity::Normal => logs_normal(&mut s, rls),
                Verbosity::Detailed => logs_detailed(&mut s, rls),
            }
        }
        Payload::Metrics(rms) => {
            let metrics: usize = rms
                .iter()
                .flat_map(|rm| &rm.scope_metrics)
                .map(|sm| sm.metrics.len())
                .sum();
            let _ = writeln!(
                s,
                "Metrics: {} resource metrics, {} metrics, {} data points",
                rms.len(),
                metrics,
                data_point_count(rms)
            );
            match verbosity {
                Verbosity::Basic => {}
                Verbosity::Normal => metrics_normal(&mut s, rms),
                Verbosity::Detailed => metrics_detailed(&mut s, rms),
            }
        }
    }
    s
}

// ---- value formatting --------------------------------------------------

/// `Str(x)`, `Int(5)`, ... as the collector's `otlptext` prints values.
fn typed_value(v: Option<&AnyValue>) -> String {
    use any_value::Value;
    match v.and_then(|v| v.value.as_ref()) {
        None => "Empty()".to_string(),
        Some(Value::StringValue(s)) => format!("Str({s})"),
        Some(Value::IntValue(i)) => format!("Int({i})"),
        Some(Value::DoubleValue(d)) => format!("Double({d})"),
        Some(Value::BoolValue(b)) => format!("Bool({b})"),
        Some(Value::BytesValue(b)) => format!(
            "Bytes({})",
            base64::engine::general_purpose::STANDARD.encode(b)
        ),
        Some(Value::ArrayValue(_)) => format!("Slice({})", plain_value(v)),
        Some(Value::KvlistValue(_)) => format!("Map({})", plain_value(v)),
        // Profiles-only: an index into a string table we do not have.
        Some(Value::StringValueStrindex(i)) => format!("StrIndex({i})"),
    }
}

/// The value as text: strings as they are, arrays and maps as JSON.
fn plain_value(v: Option<&AnyValue>) -> String {
    match v.and_then(|v| v.value.as_ref()) {
        Some(any_value::Value::StringValue(s)) => s.clone(),
        _ => json_value(v).to_string(),
    }
}

fn json_value(v: Option<&AnyValue>) -> serde_json::Value {
    use any_value::Value;
    match v.and_then(|v| v.value.as_ref()) {
        None => serde_json::Value::Null,
        Some(Value::StringValue(s)) => serde_json::Value::String(s.clone()),
        Some(Value::IntValue(i)) => serde_json::Value::from(*i),
        Some(Value::DoubleValue(d)) => serde_json::Number::from_f64(*d)
            .map(serde_json::Value::Number)
            .unwrap_or_else(|| serde_json::Value::String(d.to_string())),
        Some(Value::BoolValue(b)) => serde_json::Value::Bool(*b),
        Some(Value::BytesValue(b)) => {
            serde_json::Value::String(base64::engine::general_purpose::STANDARD.encode(b))
        }
        Some(Value::ArrayValue(a)) => a.values.iter().map(|v| json_value(Some(v))).collect(),
        Some(Value::KvlistValue(kv)) => serde_json::Value::Object(
            kv.values
                .iter()
                .map(|kv| (kv.key.clone(), json_value(kv.value.as_ref())))
                .collect(),
        ),
        Some(Value::StringValueStrindex(i)) => serde_json::Value::from(*i),
    }
}

fn attributes(s: &mut String, title: &str, attrs: &[KeyValue]) {
    if attrs.is_empty() {
        return;
    }
    let _ = writeln!(s, "{title}:");
    for kv in attrs {
        let _ = writeln!(s, "     -> {}: {}", kv.key, typed_value(kv.value.as_ref()));
    }
}

/// `k=v k2=v2`.
fn inline_attributes(attrs: &[KeyValue]) -> String {
    attrs
        .iter()
        .map(|kv| format!("{}={}", kv.key, plain_value(kv.value.as_ref())))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Go's `time.Time.String()` in UTC: `2020-02-11 20:26:13.000000789 +0000 UTC`.
fn timestamp(unix_nanos: u64) -> String {
    let Ok(t) = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(unix_nanos)) else {
        return unix_nanos.to_string();
    };
    let mut s = format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    );
    let nanos = t.nanosecond();
    if nanos > 0 {
        let frac = format!("{nanos:09}");
        let _ = write!(s, ".{}", frac.trim_end_matches('0'));
    }
    s.push_str(" +0000 UTC");
    s
}

fn resource_header(
    s: &mut String,
    kind: &str,
    i: usize,
    resource: Option<&Resource>,
    schema_url: &str,
) {
    let _ = writeln!(s, "{kind} #{i}");
    let _ = writeln!(s, "Resource SchemaURL: {schema_url}");
    if let Some(r) = resource {
        attributes(s, "Resource attributes", &r.attributes);
    }
}

fn scope_header(
    s: &mut String,
    kind: &str,
    i: usize,
    scope: Option<&InstrumentationScope>,
    schema_url: &str,
) {
    let _ = writeln!(s, "{kind} #{i}");
    let _ = writeln!(s, "{kind} SchemaURL: {schema_url}");
    let (name, version, attrs) = scope.map_or(("", "", &[][..]), |sc| {
        (
            sc.name.as_str(),
            sc.version.as_str(),
            sc.attributes.as_slice(),
        )
    });
    let _ = writeln!(s, "InstrumentationScope {name} {version}");
    attributes(s, "InstrumentationScope attributes", attrs);
}

fn hex(bytes: &[u8]) -> String {
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut acc, b| {
            let _ = write!(acc, "{b:02x}");
            acc
        })
}

// ---- logs --------------------------------------------------------------

fn severity_name(n: i32) -> &'static str {
    match n {
        1..=4 => "Trace",
        5..=8 => "Debug",
        9..=12 => "Info",
        13..=16 => "Warn",
        17..=20 => "Error",
        21..=24 => "Fatal",
        _ => "Unspecified",
    }
}

/// `Info`, `Info2`, ... as pdata names severity numbers.
fn severity(n: i32) -> String {
    let name = severity_name(n);
    let step = (n - 1).rem_euclid(4) + 1;
    if name == "Unspecified" || step == 1 {
        format!("{name}({n})")
    } else {
        format!("{name}{step}({n})")
    }
}

fn logs_normal(s: &mut String, rls: &[ResourceLogs]) {
    for (i, rl) in rls.iter().enumerate() {
        let attrs = rl
            .resource
            .as_ref()
            .map(|r| r.attributes.as_slice())
            .unwrap_or(&[]);
        let _ = writeln!(
            s,
            "ResourceLog #{i} {} {}",
            rl.schema_url,
            inline_attributes(attrs)
        );
        for (j, sl) in rl.scope_logs.iter().enumerate() {
            let scope = sl
                .scope
                .as_ref()
                .map(|sc| format!("{}@{}", sc.name, sc.version))
                .unwrap_or_default();
            let _ = writeln!(s, "ScopeLog #{j} {scope}");
            for r in &sl.log_records {
                let _ = writeln!(
                    s,
                    "{} {}",
                    plain_value(r.body.as_ref()),
                    inline_attributes(&r.attributes)
                );
            }
        }
    }
}

fn logs_detailed(s: &mut String, rls: &[ResourceLogs]) {
    for (i, rl) in rls.iter().enumerate() {
        resource_header(s, "ResourceLog", i, rl.resource.as_ref(), &rl.schema_url);
        for (j, sl) in rl.scope_logs.iter().enumerate() {
            scope_header(s, "ScopeLogs", j, sl.scope.as_ref(), &sl.schema_url);
            for (k, r) in sl.log_records.iter().enumerate() {
                let _ = writeln!(s, "LogRecord #{k}");
                let _ = writeln!(
                    s,
                    "ObservedTimestamp: {}",
                    timestamp(r.observed_time_unix_nano)
                );
                let _ = writeln!(s, "Timestamp: {}", timestamp(r.time_unix_nano));
                let _ = writeln!(s, "SeverityText: {}", r.severity_text);
                let _ = writeln!(s, "SeverityNumber: {}", severity(r.severity_number));
                if !r.event_name.is_empty() {
                    let _ = writeln!(s, "EventName: {}", r.event_name);
                }
                let _ = writeln!(s, "Body: {}", typed_value(r.body.as_ref()));
                attributes(s, "Attributes", &r.attributes);
                let _ = writeln!(s, "Trace ID: {}", hex(&r.trace_id));
                let _ = writeln!(s, "Span ID: {}", hex(&r.span_id));
                let _ = writeln!(s, "Flags: {}", r.flags);
            }
        }
    }
}

// ---- metrics -----------------------------------------------------------

fn temporality(t: i32) -> &'static str {
    match AggregationTemporality::try_from(t) {
        Ok(AggregationTemporality::Delta) => "Delta",
        Ok(AggregationTemporality::Cumulative) => "Cumulative",
        _ => "Unspecified",
    }
}

fn number(v: Option<&number_data_point::Value>) -> String {
    match v {
        Some(number_data_point::Value::AsInt(i)) => i.to_string(),
        Some(number_data_point::Value::AsDouble(d)) => format!("{d:.6}"),
        None => String::new(),
    }
}

fn metrics_normal(s: &mut String, rms: &[ResourceMetrics]) {
    for (i, rm) in rms.iter().enumerate() {
        let attrs = rm
            .resource
            .as_ref()
            .map(|r| r.attributes.as_slice())
            .unwrap_or(&[]);
        let _ = writeln!(
            s,
            "ResourceMetrics #{i} {} {}",
            rm.schema_url,
            inline_attributes(attrs)
        );
        for (j, sm) in rm.scope_metrics.iter().enumerate() {
            let scope = sm
                .scope
                .as_ref()
                .map(|sc| format!("{}@{}", sc.name, sc.version))
                .unwrap_or_default();
            let _ = writeln!(s, "ScopeMetrics #{j} {scope}");
            for m in &sm.metrics {
                let mut line = |attrs: &[KeyValue], value: String| {
                    let _ = writeln!(
                        s,
                        "{}{{{}}} {value}",
                        m.name,
                        inline_attributes(attrs).replace(' ', ",")
                    );
                };
                match &m.data {
                    Some(Data::Gauge(g)) => g
                        .data_points
                        .iter()
                        .for_each(|p| line(&p.attributes, number(p.value.as_ref()))),
                    Some(Data::Sum(x)) => x
                        .data_points
                        .iter()
                        .for_each(|p| line(&p.attributes, number(p.value.as_ref()))),
                    Some(Data::Histogram(h)) => h.data_points.iter().for_each(|p| {
                        line(
                            &p.attributes,
                            format!("count={} sum={:.6}", p.count, p.sum.unwrap_or(0.0)),
                        )
                    }),
                    Some(Data::ExponentialHistogram(h)) => h.data_points.iter().for_each(|p| {
                        line(
                            &p.attributes,
                            format!("count={} sum={:.6}", p.count, p.sum.unwrap_or(0.0)),
                        )
                    }),
                    Some(Data::Summary(x)) => x.data_points.iter().for_each(|p| {
                        line(&p.attributes, format!("count={} sum={:.6}", p.count, p.sum))
                    }),
                    None => {}
                }
            }
        }
    }
}

fn point_header(s: &mut String, kind: &str, i: usize, attrs: &[KeyValue], start: u64, time: u64) {
    let _ = writeln!(s, "{kind} #{i}");
    attributes(s, "Data point attributes", attrs);
    let _ = writeln!(s, "StartTimestamp: {}", timestamp(start));
    let _ = writeln!(s, "Timestamp: {}", timestamp(time));
}

fn exemplars(s: &mut String, ex: &[opentelemetry_proto::tonic::metrics::v1::Exemplar]) {
    if ex.is_empty() {
        return;
    }
    let _ = writeln!(s, "Exemplars:");
    for (i, e) in ex.iter().enumerate() {
        let value = match &e.value {
            Some(exemplar::Value::AsInt(v)) => v.to_string(),
            Some(exemplar::Value::AsDouble(v)) => format!("{v:.6}"),
            None => String::new(),
        };
        let _ = writeln!(s, "Exemplar #{i}");
        let _ = writeln!(s, "     -> Trace ID: {}", hex(&e.trace_id));
        let _ = writeln!(s, "     -> Span ID: {}", hex(&e.span_id));
        let _ = writeln!(s, "     -> Timestamp: {}", timestamp(e.time_unix_nano));
        let _ = writeln!(s, "     -> Value: {value}");
    }
}

fn metrics_detailed(s: &mut String, rms: &[ResourceMetrics]) {
    for (i, rm) in rms.iter().enumerate() {
        resource_header(
            s,
            "ResourceMetrics",
            i,
            rm.resource.as_ref(),
            &rm.schema_url,
        );
        for (j, sm) in rm.scope_metrics.iter().enumerate() {
            scope_header(s, "ScopeMetrics", j, sm.scope.as_ref(), &sm.schema_url);
            for (k, m) in sm.metrics.iter().enumerate() {
                let _ = writeln!(s, "Metric #{k}");
                let _ = writeln!(s, "Descriptor:");
                let _ = writeln!(s, "     -> Name: {}", m.name);
                let _ = writeln!(s, "     -> Description: {}", m.description);
                let _ = writeln!(s, "     -> Unit: {}", m.unit);
                let data_type = match &m.data {
                    Some(Data::Gauge(_)) => "Gauge",
                    Some(Data::Sum(_)) => "Sum",
                    Some(Data::Histogram(_)) => "Histogram",
                    Some(Data::ExponentialHistogram(_)) => "ExponentialHistogram",
                    Some(Data::Summary(_)) => "Summary",
                    None => "Empty",
                };
                let _ = writeln!(s, "     -> DataType: {data_type}");
                match &m.data {
                    Some(Data::Sum(x)) => {
                        let _ = writeln!(s, "     -> IsMonotonic: {}", x.is_monotonic);
                        let _ = writeln!(
                            s,
                            "     -> AggregationTemporality: {}",
                            temporality(x.aggregation_temporality)
                        );
                    }
                    Some(Data::Histogram(h)) => {
                        let _ = writeln!(
                            s,
                            "     -> AggregationTemporality: {}",
                            temporality(h.aggregation_temporality)
                        );
                    }
                    Some(Data::ExponentialHistogram(h)) => {
                        let _ = writeln!(
                            s,
                            "     -> AggregationTemporality: {}",
                            temporality(h.aggregation_temporality)
                        );
                    }
                    _ => {}
                }
                let numbers = match &m.data {
                    Some(Data::Gauge(g)) => g.data_points.as_slice(),
                    Some(Data::Sum(x)) => x.data_points.as_slice(),
                    _ => &[],
                };
                for (n, p) in numbers.iter().enumerate() {
                    point_header(
                        s,
                        "NumberDataPoints",
                        n,
                        &p.attributes,
                        p.start_time_unix_nano,
                        p.time_unix_nano,
                    );
                    let _ = writeln!(s, "Value: {}", number(p.value.as_ref()));
                    exemplars(s, &p.exemplars);
                }
                if let Some(Data::Histogram(h)) = &m.data {
                    for (n, p) in h.data_points.iter().enumerate() {
                        point_header(
                            s,
                            "HistogramDataPoints",
                            n,
                            &p.attributes,
                            p.start_time_unix_nano,
                            p.time_unix_nano,
                        );
                        let _ = writeln!(s, "Count: {}", p.count);
                        if let Some(v) = p.sum {
                            let _ = writeln!(s, "Sum: {v:.6}");
                        }
                        if let Some(v) = p.min {
                            let _ = writeln!(s, "Min: {v:.6}");
                        }
                        if let Some(v) = p.max {
                            let _ = writeln!(s, "Max: {v:.6}");
                        }
                        for (b, bound) in p.explicit_bounds.iter().enumerate() {
                            let _ = writeln!(s, "ExplicitBounds #{b}: {bound:.6}");
                        }
                        for (b, count) in p.bucket_counts.iter().enumerate() {
                            let _ = writeln!(s, "Buckets #{b}, Count: {count}");
                        }
                        exemplars(s, &p.exemplars);
                    }
                }
                if let Some(Data::ExponentialHistogram(h)) = &m.data {
                    for (n, p) in h.data_points.iter().enumerate() {
                        point_header(
                            s,
                            "ExponentialHistogramDataPoints",
                            n,
                            &p.attributes,
                            p.start_time_unix_nano,
                            p.time_unix_nano,
                        );
                        let _ = writeln!(s, "Count: {}", p.count);
                        if let Some(v) = p.sum {
                            let _ = writeln!(s, "Sum: {v:.6}");
                        }
                        if let Some(v) = p.min {
                            let _ = writeln!(s, "Min: {v:.6}");
                        }
                        if let Some(v) = p.max {
                            let _ = writeln!(s, "Max: {v:.6}");
                        }
                        let _ = writeln!(s, "Scale: {}", p.scale);
                        let _ = writeln!(s, "ZeroCount: {}", p.zero_count);
                        for (label, buckets) in
                            [("Positive", &p.positive), ("Negative", &p.negative)]
                        {
                            if let Some(b) = buckets {
                                let _ = writeln!(
                                    s,
                                    "{label} Offset: {}, BucketCounts: {:?}",
                                    b.offset, b.bucket_counts
                                );
                            }
                        }
                        exemplars(s, &p.exemplars);
                    }
                }
                if let Some(Data::Summary(x)) = &m.data {
                    for (n, p) in x.data_points.iter().enumerate() {
                        point_header(
                            s,
                            "SummaryDataPoints",
                            n,
                            &p.attributes,
                            p.start_time_unix_nano,
                            p.time_unix_nano,
                        );
                        let _ = writeln!(s, "Count: {}", p.count);
                        let _ = writeln!(s, "Sum: {:.6}", p.sum);
                        for (q, qv) in p.quantile_values.iter().enumerate() {
                            let _ = writeln!(
                                s,
                                "QuantileValue #{q}: Quantile {:.6}, Value {:.6}",
                                qv.quantile, qv.value
                            );
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::common::v1::{ArrayValue, KeyValueList};
    use opentelemetry_proto::tonic::logs::v1::{LogRecord, ScopeLogs};
    use opentelemetry_proto::tonic::metrics::v1::{Metric, NumberDataPoint, ScopeMetrics, Sum};

    /// A writer tests can read back.
    #[derive(Clone, Default)]
    struct SharedBuf(Arc<Mutex<Vec<u8>>>);

    impl Write for SharedBuf {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0
                .lock()
                .map_err(|_| std::io::Error::other("poisoned"))?
                .extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl SharedBuf {
        fn text(&self) -> String {
            self.0
                .lock()
                .map(|v| String::from_utf8_lossy(&v).into_owned())
                .unwrap_or_default()
        }
    }

    fn av(v: any_value::Value) -> Option<AnyValue> {
        Some(AnyValue { value: Some(v) })
    }

    fn kv(k: &str, v: any_value::Value) -> KeyValue {
        KeyValue {
            key: k.to_string(),
            value: av(v),
            ..Default::default()
        }
    }

    fn sample_logs() -> Payload {
        use any_value::Value;
        Payload::Logs(vec![ResourceLogs {
            resource: Some(Resource {
                attributes: vec![kv("host.name", Value::StringValue("box".into()))],
                ..Default::default()
            }),
            scope_logs: vec![ScopeLogs {
                scope: Some(InstrumentationScope {
                    name: "oomscope".into(),
                    version: "0.1.0".into(),
                    ..Default::default()
                }),
                log_records: vec![LogRecord {
                    time_unix_nano: 1_581_452_773_000_000_789,
                    severity_number: 17,
                    severity_text: "ERROR".into(),
                    event_name: "oom.kill".into(),
                    body: av(Value::StringValue(
                        "Out of memory: Killed process 42".into(),
                    )),
                    attributes: vec![
                        kv("process.pid", Value::IntValue(42)),
                        kv("ratio", Value::DoubleValue(0.5)),
                        kv("killed", Value::BoolValue(true)),
                        kv(
                            "list",
                            Value::ArrayValue(ArrayValue {
                                values: vec![
                                    AnyValue {
                                        value: Some(Value::StringValue("a".into())),
                                    },
                                    AnyValue {
                                        value: Some(Value::IntValue(1)),
                                    },
                                ],
                            }),
                        ),
                        kv(
                            "map",
                            Value::KvlistValue(KeyValueList {
                                values: vec![kv("k", Value::StringValue("v".into()))],
                            }),
                        ),
                        kv("raw", Value::BytesValue(vec![1, 2, 3])),
                    ],
                    trace_id: vec![0xab; 16],
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }])
    }

    fn sample_metrics() -> Payload {
        Payload::Metrics(vec![ResourceMetrics {
            scope_metrics: vec![ScopeMetrics {
                metrics: vec![Metric {
                    name: "system.memory.usage".into(),
                    unit: "By".into(),
                    data: Some(Data::Sum(Sum {
                        data_points: vec![NumberDataPoint {
                            attributes: vec![kv(
                                "state",
                                any_value::Value::StringValue("used".into()),
                            )],
                            value: Some(number_data_point::Value::AsInt(1024)),
                            ..Default::default()
                        }],
                        aggregation_temporality: 2,
                        is_monotonic: false,
                    })),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }])
    }

    fn client(verbosity: Verbosity) -> (DebugClient, SharedBuf) {
        let buf = SharedBuf::default();
        let cfg = DebugExporterConfig {
            verbosity,
            sampling_initial: 1000,
            ..Default::default()
        };
        (DebugClient::new(&cfg, Box::new(buf.clone())), buf)
    }

    #[tokio::test]
    async fn basic_prints_one_summary_line() {
        let (c, buf) = client(Verbosity::Basic);
        c.export(&std::sync::Arc::new(sample_logs()))
            .await
            .expect("export");
        c.export(&std::sync::Arc::new(sample_metrics()))
            .await
            .expect("export");
        assert_eq!(
            buf.text(),
            "Logs: 1 resource logs, 1 log records\nMetrics: 1 resource metrics, 1 metrics, 1 data points\n"
        );
    }

    #[tokio::test]
    async fn detailed_prints_every_field() {
        let (c, buf) = client(Verbosity::Detailed);
        c.export(&std::sync::Arc::new(sample_logs()))
            .await
            .expect("export");
        let text = buf.text();
        for expected in [
            "ResourceLog #0\n",
            "Resource attributes:\n     -> host.name: Str(box)\n",
            "ScopeLogs #0\n",
            "InstrumentationScope oomscope 0.1.0\n",
            "LogRecord #0\n",
            "Timestamp: 2020-02-11 20:26:13.000000789 +0000 UTC\n",
            "ObservedTimestamp: 1970-01-01 00:00:00 +0000 UTC\n",
            "SeverityText: ERROR\n",
            "SeverityNumber: Error(17)\n",
            "EventName: oom.kill\n",
            "Body: Str(Out of memory: Killed process 42)\n",
            "     -> process.pid: Int(42)\n",
            "     -> ratio: Double(0.5)\n",
            "     -> killed: Bool(true)\n",
            "     -> list: Slice([\"a\",1])\n",
            "     -> map: Map({\"k\":\"v\"})\n",
            "     -> raw: Bytes(AQID)\n",
            "Trace ID: abababababababababababababababab\n",
        ] {
            assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
        }

        let (c, buf) = client(Verbosity::Detailed);
        c.export(&std::sync::Arc::new(sample_metrics()))
            .await
            .expect("export");
        let text = buf.text();
        for expected in [
            "ResourceMetrics #0\n",
            "Metric #0\nDescriptor:\n     -> Name: system.memory.usage\n",
            "     -> Unit: By\n     -> DataType: Sum\n     -> IsMonotonic: false\n     -> AggregationTemporality: Cumulative\n",
            "NumberDataPoints #0\nData point attributes:\n     -> state: Str(used)\n",
            "Value: 1024\n",
        ] {
            assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
        }
    }

    #[tokio::test]
    async fn normal_prints_a_line_per_item() {
        let (c, buf) = client(Verbosity::Normal);
        c.export(&std::sync::Arc::new(sample_metrics()))
            .await
            .expect("export");
        assert!(
            buf.text()
                .contains("system.memory.usage{state=used} 1024\n"),
            "{}",
            buf.text()
        );
        let (c, buf) = client(Verbosity::Normal);
        c.export(&std::sync::Arc::new(sample_logs()))
            .await
            .expect("export");
        assert!(
            buf.text()
                .contains("Out of memory: Killed process 42 process.pid=42"),
            "{}",
            buf.text()
        );
    }

    /// A writer whose first write blocks until the test lets it go (a
    /// stdout pipe nobody reads), and gives up after a generous bound.
    struct BlockingWriter {
        started: Option<tokio::sync::oneshot::Sender<()>>,
        release: std::sync::mpsc::Receiver<()>,
        buf: SharedBuf,
    }

    impl Write for BlockingWriter {
        fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
            if let Some(started) = self.started.take() {
                let _ = started.send(());
                self.release
                    .recv_timeout(crate::test_support::WAIT)
                    .map_err(|_| std::io::Error::other("never released"))?;
            }
            self.buf.write(data)
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// On a single-threaded runtime: if the write blocked the runtime's
    /// thread, the test could not release it and the write would fail.
    #[tokio::test(flavor = "current_thread")]
    async fn a_blocked_stdout_does_not_block_the_runtime() {
        let (started_tx, started_rx) = tokio::sync::oneshot::channel();
        let (release_tx, release_rx) = std::sync::mpsc::channel();
        let buf = SharedBuf::default();
        let writer = BlockingWriter {
            started: Some(started_tx),
            release: release_rx,
            buf: buf.clone(),
        };
        let cfg = DebugExporterConfig {
            sampling_initial: 1000,
            ..Default::default()
        };
        let client = Arc::new(DebugClient::new(&cfg, Box::new(writer)));
        let exporting = Arc::clone(&client);
        let export = tokio::spawn(async move { exporting.export(&Arc::new(sample_logs())).await });
        started_rx.await.expect("the write started");
        release_tx.send(()).expect("release");
        let result = export.await.expect("join");
        assert!(result.is_ok(), "{result:?}");
        assert!(
            buf.text().starts_with("Logs: 1 resource logs"),
            "{}",
            buf.text()
        );
    }

    #[test]
    fn sampling_prints_initial_then_every_nth_per_second() {
        let mut s = Sampler {
            initial: 2,
            thereafter: 3,
            window_start: None,
            seen: 0,
        };
        let t0 = Instant::now();
        let admitted: Vec<bool> = (0..8).map(|_| s.admit(t0)).collect();
        assert_eq!(
            admitted,
            vec![true, true, false, false, true, false, false, true]
        );
        assert!(
            s.admit(t0 + Duration::from_secs(1)),
            "a new second starts over"
        );
    }

    #[test]
    fn config_defaults_and_parsing() {
        let c: DebugExporterConfig =
            serde_json::from_value(serde_json::json!({"verbosity": "detailed"})).expect("valid");
        assert_eq!(c.verbosity, Verbosity::Detailed);
        assert_eq!((c.sampling_initial, c.sampling_thereafter), (2, 1));
        assert!(serde_json::from_value::<DebugExporterConfig>(
            serde_json::json!({"verbosity": "loud"})
        )
        .is_err());
        assert_eq!(DebugExporterConfig::default().verbosity, Verbosity::Basic);
    }
}
