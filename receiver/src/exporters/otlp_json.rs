//! OTLP/JSON encoding (https://opentelemetry.io/docs/specs/otlp/#json-protobuf-encoding),
//! written straight from the protobuf types into one buffer:
//! - lowerCamelCase keys, 64-bit integers as strings, enums as integers,
//!   trace and span ids as hex, bytes as base64;
//! - fields at their default value are left out, like the collector does,
//!   and so are messages left empty by that; oneof members and proto3
//!   `optional` fields are kept, since there presence carries meaning;
//! - NaN and infinities are the strings `"NaN"`, `"Infinity"`, `"-Infinity"`
//!   as proto3 JSON requires.
//!
//! Written by hand rather than through opentelemetry-proto's serde support:
//! that needs a `serde_json::Value` tree to leave defaults out and to fix
//! the non-finite numbers it writes as `null`, and building the tree was a
//! fifth of the idle agent's CPU (the file exporter writes every memory
//! scrape). The receiver's decoder reads what this writes back to the same
//! data (tests below, and the `otlp_http` fuzz target).
//!
//! Shared by the `file` exporter (one request per line) and the `otlp_http`
//! exporter (`encoding: json`).

use base64::Engine as _;
use opentelemetry_proto::tonic::common::v1::{
    any_value, AnyValue, EntityRef, InstrumentationScope, KeyValue,
};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs};
use opentelemetry_proto::tonic::metrics::v1::{
    exemplar, exponential_histogram_data_point::Buckets, metric::Data, number_data_point,
    summary_data_point::ValueAtQuantile, Exemplar, ExponentialHistogramDataPoint,
    HistogramDataPoint, Metric, NumberDataPoint, ResourceMetrics, SummaryDataPoint,
};
use opentelemetry_proto::tonic::resource::v1::Resource;

use crate::pipeline::Payload;

/// One `ExportLogsServiceRequest` / `ExportMetricsServiceRequest` as compact JSON.
pub fn encode(payload: &Payload) -> Vec<u8> {
    let mut out = Vec::with_capacity(4096);
    encode_into(payload, &mut out);
    out
}

/// [`encode`], appended to `out`.
pub fn encode_into(payload: &Payload, out: &mut Vec<u8>) {
    let mut o = Object::open(out);
    match payload {
        Payload::Logs(rl) => o.array("resourceLogs", rl, resource_logs),
        Payload::Metrics(rm) => o.array("resourceMetrics", rm, resource_metrics),
    }
    o.close();
}

/// A JSON object being written: fields are added with their key, or left
/// out when at their default.
struct Object<'a> {
    out: &'a mut Vec<u8>,
    /// Whether a field was written (the next needs a comma).
    any: bool,
}

impl<'a> Object<'a> {
    fn open(out: &'a mut Vec<u8>) -> Self {
        out.push(b'{');
        Object { out, any: false }
    }

    fn close(self) {
        self.out.push(b'}');
    }

    fn key(&mut self, key: &str) {
        if self.any {
            self.out.push(b',');
        }
        self.any = true;
        self.out.push(b'"');
        self.out.extend_from_slice(key.as_bytes());
        self.out.extend_from_slice(b"\":");
    }

    fn str(&mut self, key: &str, s: &str) {
        if !s.is_empty() {
            self.key(key);
            string(self.out, s);
        }
    }

    /// A 64-bit unsigned field: a decimal string.
    fn u64(&mut self, key: &str, n: u64) {
        if n != 0 {
            self.key(key);
            quoted_int(self.out, n);
        }
    }

    /// A 32-bit integer or enum: a number.
    fn int(&mut self, key: &str, n: impl itoa::Integer + Default + PartialEq) {
        if n != Default::default() {
            self.key(key);
            self.out
                .extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
        }
    }

    fn bool(&mut self, key: &str, b: bool) {
        if b {
            self.key(key);
            self.out.extend_from_slice(b"true");
        }
    }

    fn double(&mut self, key: &str, d: f64) {
        if d != 0.0 || d.is_nan() {
            self.double_present(key, d);
        }
    }

    /// A double whose presence matters (oneof member, proto3 `optional`).
    fn double_present(&mut self, key: &str, d: f64) {
        self.key(key);
        double(self.out, d);
    }

    fn hex(&mut self, key: &str, bytes: &[u8]) {
        if !bytes.is_empty() {
            self.key(key);
            hex(self.out, bytes);
        }
    }

    /// A repeated message field; each element is written in full (an
    /// element is never left out).
    fn array<T>(&mut self, key: &str, items: &[T], item: fn(&mut Object<'_>, &T)) {
        if items.is_empty() {
            return;
        }
        self.key(key);
        self.out.push(b'[');
        for (i, it) in items.iter().enumerate() {
            if i > 0 {
                self.out.push(b',');
            }
            let mut o = Object::open(self.out);
            item(&mut o, it);
            o.close();
        }
        self.out.push(b']');
    }

    /// A repeated scalar field, each element written by `value`.
    fn scalars<T>(&mut self, key: &str, items: &[T], value: fn(&mut Vec<u8>, &T)) {
        if items.is_empty() {
            return;
        }
        self.key(key);
        self.out.push(b'[');
        for (i, it) in items.iter().enumerate() {
            if i > 0 {
                self.out.push(b',');
            }
            value(self.out, it);
        }
        self.out.push(b']');
    }

    /// A 64-bit integer whose presence matters (a oneof member): a
    /// decimal string, even at 0.
    fn quoted_present(&mut self, key: &str, n: i64) {
        self.key(key);
        quoted_int(self.out, n);
    }

    /// A message field: left out, key and all, when it writes no field.
    fn message(&mut self, key: &str, fields: impl FnOnce(&mut Object<'_>)) {
        let (mark, any) = (self.out.len(), self.any);
        self.key(key);
        let mut o = Object::open(self.out);
        fields(&mut o);
        if o.any {
            o.close();
        } else {
            self.out.truncate(mark);
            self.any = any;
        }
    }

    /// A message field whose presence matters: written even when empty.
    fn message_present(&mut self, key: &str, fields: impl FnOnce(&mut Object<'_>)) {
        self.key(key);
        let mut o = Object::open(self.out);
        fields(&mut o);
        o.close();
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// A JSON string: `"`, `\` and control characters escaped as serde_json
/// does; everything else (UTF-8 included) as it is.
fn string(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    let bytes = s.as_bytes();
    let mut run = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let escape: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0x08 => b"\\b",
            0x0C => b"\\f",
            0..=0x1F => &[
                b'\\',
                b'u',
                b'0',
                b'0',
                HEX[usize::from(b >> 4)],
                HEX[usize::from(b & 0xF)],
            ],
            _ => continue,
        };
        out.extend_from_slice(&bytes[run..i]);
        out.extend_from_slice(escape);
        run = i + 1;
    }
    out.extend_from_slice(&bytes[run..]);
    out.push(b'"');
}

fn quoted_int(out: &mut Vec<u8>, n: impl itoa::Integer) {
    out.push(b'"');
    out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
    out.push(b'"');
}

/// A double: shortest round-trip form (serde_json's), or proto3 JSON's
/// string for NaN and the infinities.
fn double(out: &mut Vec<u8>, d: f64) {
    if d.is_nan() {
        out.extend_from_slice(b"\"NaN\"");
    } else if d == f64::INFINITY {
        out.extend_from_slice(b"\"Infinity\"");
    } else if d == f64::NEG_INFINITY {
        out.extend_from_slice(b"\"-Infinity\"");
    } else {
        out.extend_from_slice(zmij::Buffer::new().format_finite(d).as_bytes());
    }
}

fn hex(out: &mut Vec<u8>, bytes: &[u8]) {
    out.push(b'"');
    for b in bytes {
        out.push(HEX[usize::from(b >> 4)]);
        out.push(HEX[usize::from(b & 0xF)]);
    }
    out.push(b'"');
}

fn attributes(o: &mut Object<'_>, key: &str, attrs: &[KeyValue]) {
    o.array(key, attrs, key_value);
}

fn key_value(o: &mut Object<'_>, kv: &KeyValue) {
    o.str("key", &kv.key);
    if let Some(v) = &kv.value {
        o.message("value", |o| any_value(o, v));
    }
    o.int("keyStrindex", kv.key_strindex);
}

fn any_value(o: &mut Object<'_>, v: &AnyValue) {
    use any_value::Value;
    match &v.value {
        Some(Value::StringValue(s)) => {
            o.key("stringValue");
            string(o.out, s);
        }
        Some(Value::BoolValue(b)) => {
            o.key("boolValue");
            o.out.extend_from_slice(if *b { b"true" } else { b"false" });
        }
        Some(Value::IntValue(i)) => {
            o.quoted_present("intValue", *i);
        }
        Some(Value::DoubleValue(d)) => o.double_present("doubleValue", *d),
        Some(Value::ArrayValue(a)) => {
            o.message_present("arrayValue", |o| o.array("values", &a.values, any_value));
        }
        Some(Value::KvlistValue(kv)) => {
            o.message_present("kvlistValue", |o| attributes(o, "values", &kv.values));
        }
        Some(Value::BytesValue(b)) => {
            o.key("bytesValue");
            string(o.out, &base64::engine::general_purpose::STANDARD.encode(b));
        }
        Some(Value::StringValueStrindex(i)) => o.int("stringValueStrindex", *i),
        None => {}
    }
}

fn resource(o: &mut Object<'_>, r: &Resource) {
    attributes(o, "attributes", &r.attributes);
    o.int("droppedAttributesCount", r.dropped_attributes_count);
    o.array("entityRefs", &r.entity_refs, entity_ref);
}

fn entity_ref(o: &mut Object<'_>, e: &EntityRef) {
    o.str("schemaUrl", &e.schema_url);
    o.str("type", &e.r#type);
    o.scalars("idKeys", &e.id_keys, |out, s| string(out, s));
    o.scalars("descriptionKeys", &e.description_keys, |out, s| {
        string(out, s)
    });
}

fn scope(o: &mut Object<'_>, s: &InstrumentationScope) {
    o.str("name", &s.name);
    o.str("version", &s.version);
    attributes(o, "attributes", &s.attributes);
    o.int("droppedAttributesCount", s.dropped_attributes_count);
}

fn resource_logs(o: &mut Object<'_>, rl: &ResourceLogs) {
    if let Some(r) = &rl.resource {
        o.message("resource", |o| resource(o, r));
    }
    o.array("scopeLogs", &rl.scope_logs, |o, sl| {
        if let Some(s) = &sl.scope {
            o.message("scope", |o| scope(o, s));
        }
        o.array("logRecords", &sl.log_records, log_record);
        o.str("schemaUrl", &sl.schema_url);
    });
    o.str("schemaUrl", &rl.schema_url);
}

fn log_record(o: &mut Object<'_>, r: &LogRecord) {
    o.u64("timeUnixNano", r.time_unix_nano);
    o.u64("observedTimeUnixNano", r.observed_time_unix_nano);
    o.int("severityNumber", r.severity_number);
    o.str("severityText", &r.severity_text);
    if let Some(b) = &r.body {
        o.message("body", |o| any_value(o, b));
    }
    attributes(o, "attributes", &r.attributes);
    o.int("droppedAttributesCount", r.dropped_attributes_count);
    o.int("flags", r.flags);
    o.hex("traceId", &r.trace_id);
    o.hex("spanId", &r.span_id);
    o.str("eventName", &r.event_name);
}

fn resource_metrics(o: &mut Object<'_>, rm: &ResourceMetrics) {
    if let Some(r) = &rm.resource {
        o.message("resource", |o| resource(o, r));
    }
    o.array("scopeMetrics", &rm.scope_metrics, |o, sm| {
        if let Some(s) = &sm.scope {
            o.message("scope", |o| scope(o, s));
        }
        o.array("metrics", &sm.metrics, metric);
        o.str("schemaUrl", &sm.schema_url);
    });
    o.str("schemaUrl", &rm.schema_url);
}

fn metric(o: &mut Object<'_>, m: &Metric) {
    o.str("name", &m.name);
    o.str("description", &m.description);
    o.str("unit", &m.unit);
    match &m.data {
        Some(Data::Gauge(g)) => {
            o.message_present("gauge", |o| o.array("dataPoints", &g.data_points, number));
        }
        Some(Data::Sum(s)) => o.message_present("sum", |o| {
            o.array("dataPoints", &s.data_points, number);
            o.int("aggregationTemporality", s.aggregation_temporality);
            o.bool("isMonotonic", s.is_monotonic);
        }),
        Some(Data::Histogram(h)) => o.message_present("histogram", |o| {
            o.array("dataPoints", &h.data_points, histogram);
            o.int("aggregationTemporality", h.aggregation_temporality);
        }),
        Some(Data::ExponentialHistogram(h)) => o.message_present("exponentialHistogram", |o| {
            o.array("dataPoints", &h.data_points, exponential_histogram);
            o.int("aggregationTemporality", h.aggregation_temporality);
        }),
        Some(Data::Summary(s)) => {
            o.message_present("summary", |o| {
                o.array("dataPoints", &s.data_points, summary)
            });
        }
        None => {}
    }
    attributes(o, "metadata", &m.metadata);
}

fn number(o: &mut Object<'_>, p: &NumberDataPoint) {
    attributes(o, "attributes", &p.attributes);
    o.u64("startTimeUnixNano", p.start_time_unix_nano);
    o.u64("timeUnixNano", p.time_unix_nano);
    match p.value {
        Some(number_data_point::Value::AsDouble(d)) => o.double_present("asDouble", d),
        Some(number_data_point::Value::AsInt(i)) => {
            o.quoted_present("asInt", i);
        }
        None => {}
    }
    o.array("exemplars", &p.exemplars, exemplar);
    o.int("flags", p.flags);
}

fn optional_double(o: &mut Object<'_>, key: &str, d: Option<f64>) {
    if let Some(d) = d {
        o.double_present(key, d);
    }
}

fn histogram(o: &mut Object<'_>, p: &HistogramDataPoint) {
    attributes(o, "attributes", &p.attributes);
    o.u64("startTimeUnixNano", p.start_time_unix_nano);
    o.u64("timeUnixNano", p.time_unix_nano);
    o.u64("count", p.count);
    optional_double(o, "sum", p.sum);
    o.scalars("bucketCounts", &p.bucket_counts, |out, n| {
        quoted_int(out, *n)
    });
    o.scalars("explicitBounds", &p.explicit_bounds, |out, d| {
        double(out, *d)
    });
    o.array("exemplars", &p.exemplars, exemplar);
    o.int("flags", p.flags);
    optional_double(o, "min", p.min);
    optional_double(o, "max", p.max);
}

fn exponential_histogram(o: &mut Object<'_>, p: &ExponentialHistogramDataPoint) {
    fn buckets(o: &mut Object<'_>, b: &Buckets) {
        o.int("offset", b.offset);
        o.scalars("bucketCounts", &b.bucket_counts, |out, n| {
            quoted_int(out, *n)
        });
    }
    attributes(o, "attributes", &p.attributes);
    o.u64("startTimeUnixNano", p.start_time_unix_nano);
    o.u64("timeUnixNano", p.time_unix_nano);
    o.u64("count", p.count);
    optional_double(o, "sum", p.sum);
    o.int("scale", p.scale);
    o.u64("zeroCount", p.zero_count);
    if let Some(b) = &p.positive {
        o.message("positive", |o| buckets(o, b));
    }
    if let Some(b) = &p.negative {
        o.message("negative", |o| buckets(o, b));
    }
    o.int("flags", p.flags);
    o.array("exemplars", &p.exemplars, exemplar);
    optional_double(o, "min", p.min);
    optional_double(o, "max", p.max);
    o.double("zeroThreshold", p.zero_threshold);
}

fn summary(o: &mut Object<'_>, p: &SummaryDataPoint) {
    fn quantile(o: &mut Object<'_>, q: &ValueAtQuantile) {
        o.double("quantile", q.quantile);
        o.double("value", q.value);
    }
    attributes(o, "attributes", &p.attributes);
    o.u64("startTimeUnixNano", p.start_time_unix_nano);
    o.u64("timeUnixNano", p.time_unix_nano);
    o.u64("count", p.count);
    o.double("sum", p.sum);
    o.array("quantileValues", &p.quantile_values, quantile);
    o.int("flags", p.flags);
}

fn exemplar(o: &mut Object<'_>, e: &Exemplar) {
    attributes(o, "filteredAttributes", &e.filtered_attributes);
    o.u64("timeUnixNano", e.time_unix_nano);
    match e.value {
        Some(exemplar::Value::AsDouble(d)) => o.double_present("asDouble", d),
        Some(exemplar::Value::AsInt(i)) => {
            o.quoted_present("asInt", i);
        }
        None => {}
    }
    o.hex("spanId", &e.span_id);
    o.hex("traceId", &e.trace_id);
}

#[cfg(test)]
mod tests {
    use opentelemetry_proto::tonic::common::v1::{ArrayValue, KeyValueList};
    use opentelemetry_proto::tonic::logs::v1::ScopeLogs;
    use opentelemetry_proto::tonic::metrics::v1::{
        summary_data_point, ExponentialHistogram, Gauge, Histogram, ScopeMetrics, Sum, Summary,
    };

    use super::*;
    use crate::pipeline::Signal;

    fn text(payload: &Payload) -> String {
        String::from_utf8(encode(payload)).expect("UTF-8")
    }

    fn kv(key: &str, value: any_value::Value) -> KeyValue {
        KeyValue {
            key: key.into(),
            value: Some(AnyValue { value: Some(value) }),
            ..Default::default()
        }
    }

    fn string_value(s: &str) -> any_value::Value {
        any_value::Value::StringValue(s.into())
    }

    fn one_record(record: LogRecord) -> Payload {
        Payload::Logs(vec![ResourceLogs {
            scope_logs: vec![ScopeLogs {
                log_records: vec![record],
                ..Default::default()
            }],
            ..Default::default()
        }])
    }

    fn one_metric(data: Data) -> Payload {
        Payload::Metrics(vec![ResourceMetrics {
            scope_metrics: vec![ScopeMetrics {
                metrics: vec![Metric {
                    name: "m".into(),
                    data: Some(data),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }])
    }

    /// Every kind of attribute value, nested ones included.
    fn every_value() -> Vec<KeyValue> {
        use any_value::Value;
        vec![
            kv("s", string_value("text \"quoted\" \\ \n\t\u{1} é ✓")),
            kv("empty.s", string_value("")),
            kv("b", Value::BoolValue(true)),
            kv("f", Value::BoolValue(false)),
            kv("i", Value::IntValue(-9_007_199_254_740_993)),
            kv("zero", Value::IntValue(0)),
            kv("d", Value::DoubleValue(0.1)),
            kv("d0", Value::DoubleValue(0.0)),
            kv("big", Value::DoubleValue(1e300)),
            kv("bytes", Value::BytesValue(vec![0, 1, 254, 255])),
            kv(
                "arr",
                Value::ArrayValue(ArrayValue {
                    values: vec![
                        AnyValue {
                            value: Some(Value::IntValue(1)),
                        },
                        AnyValue {
                            value: Some(string_value("two")),
                        },
                        AnyValue {
                            value: Some(Value::ArrayValue(ArrayValue::default())),
                        },
                    ],
                }),
            ),
            kv("empty.arr", Value::ArrayValue(ArrayValue::default())),
            kv(
                "map",
                Value::KvlistValue(KeyValueList {
                    values: vec![
                        kv("inner", Value::DoubleValue(-2.5)),
                        kv(
                            "deeper",
                            Value::KvlistValue(KeyValueList {
                                values: vec![kv("x", string_value("y"))],
                            }),
                        ),
                    ],
                }),
            ),
            kv("empty.map", Value::KvlistValue(KeyValueList::default())),
        ]
    }

    fn resource() -> Resource {
        Resource {
            attributes: vec![kv("host.name", string_value("node-1"))],
            dropped_attributes_count: 2,
            entity_refs: vec![
                EntityRef {
                    schema_url: "https://opentelemetry.io/schemas/1.30.0".into(),
                    r#type: "host".into(),
                    id_keys: vec!["host.name".into()],
                    description_keys: vec![],
                },
                // Every field at its default but one: left out, and read back.
                EntityRef {
                    description_keys: vec!["os.type".into()],
                    ..Default::default()
                },
            ],
        }
    }

    fn rich_logs() -> Payload {
        Payload::Logs(vec![ResourceLogs {
            resource: Some(resource()),
            scope_logs: vec![ScopeLogs {
                scope: Some(InstrumentationScope {
                    name: "oomscope".into(),
                    version: "1.2.3".into(),
                    attributes: vec![kv("a", string_value("b"))],
                    dropped_attributes_count: 0,
                }),
                log_records: vec![
                    LogRecord {
                        time_unix_nano: 1_544_712_660_300_000_000,
                        observed_time_unix_nano: u64::MAX,
                        severity_number: 17,
                        severity_text: "ERROR".into(),
                        body: Some(AnyValue {
                            value: Some(string_value(
                                "java.lang.OutOfMemoryError: Java heap space",
                            )),
                        }),
                        attributes: every_value(),
                        dropped_attributes_count: 1,
                        flags: 1,
                        trace_id: (0..16).collect(),
                        span_id: (0xF0..0xF8).collect(),
                        event_name: "linux.oom.kill".into(),
                    },
                    LogRecord::default(),
                ],
                schema_url: "https://opentelemetry.io/schemas/1.30.0".into(),
            }],
            schema_url: "https://example.com/r".into(),
        }])
    }

    fn exemplars() -> Vec<Exemplar> {
        vec![
            Exemplar {
                filtered_attributes: vec![kv("e", string_value("x"))],
                time_unix_nano: 5,
                span_id: vec![1; 8],
                trace_id: vec![2; 16],
                value: Some(exemplar::Value::AsDouble(1.5)),
            },
            Exemplar {
                value: Some(exemplar::Value::AsInt(0)),
                ..Default::default()
            },
        ]
    }

    fn rich_metrics() -> Payload {
        let number = |value| NumberDataPoint {
            attributes: vec![kv("state", string_value("used"))],
            start_time_unix_nano: 1,
            time_unix_nano: 2,
            exemplars: exemplars(),
            flags: 1,
            value: Some(value),
        };
        let metrics = vec![
            Metric {
                name: "system.memory.usage".into(),
                description: "Bytes of memory in use.".into(),
                unit: "By".into(),
                metadata: vec![kv("meta", string_value("data"))],
                data: Some(Data::Sum(Sum {
                    data_points: vec![
                        number(number_data_point::Value::AsInt(i64::MIN)),
                        number(number_data_point::Value::AsInt(0)),
                    ],
                    aggregation_temporality: 2,
                    is_monotonic: false,
                })),
            },
            Metric {
                name: "g".into(),
                data: Some(Data::Gauge(Gauge {
                    data_points: vec![
                        number(number_data_point::Value::AsDouble(0.0)),
                        number(number_data_point::Value::AsDouble(123.456e-7)),
                    ],
                })),
                ..Default::default()
            },
            Metric {
                name: "empty.gauge".into(),
                data: Some(Data::Gauge(Gauge::default())),
                ..Default::default()
            },
            Metric {
                name: "h".into(),
                data: Some(Data::Histogram(Histogram {
                    data_points: vec![
                        HistogramDataPoint {
                            attributes: vec![],
                            start_time_unix_nano: 1,
                            time_unix_nano: 2,
                            count: 3,
                            sum: Some(0.0),
                            bucket_counts: vec![0, 2, u64::MAX, 1],
                            explicit_bounds: vec![-1.0, 0.0, 2.5],
                            exemplars: exemplars(),
                            flags: 0,
                            min: Some(0.0),
                            max: Some(2.0),
                        },
                        HistogramDataPoint::default(),
                    ],
                    aggregation_temporality: 1,
                })),
                ..Default::default()
            },
            Metric {
                name: "eh".into(),
                data: Some(Data::ExponentialHistogram(ExponentialHistogram {
                    data_points: vec![ExponentialHistogramDataPoint {
                        attributes: vec![kv("eh", string_value("x"))],
                        start_time_unix_nano: 3,
                        time_unix_nano: 4,
                        flags: 1,
                        min: Some(-1.0),
                        max: Some(7.0),
                        count: 4,
                        sum: Some(10.0),
                        scale: -3,
                        zero_count: 1,
                        positive: Some(Buckets {
                            offset: -2,
                            bucket_counts: vec![1, 2],
                        }),
                        negative: Some(Buckets {
                            offset: 3,
                            bucket_counts: vec![],
                        }),
                        zero_threshold: 1e-9,
                        exemplars: exemplars(),
                    }],
                    aggregation_temporality: 2,
                })),
                ..Default::default()
            },
            Metric {
                name: "s".into(),
                data: Some(Data::Summary(Summary {
                    data_points: vec![SummaryDataPoint {
                        attributes: vec![kv("s", string_value("y"))],
                        start_time_unix_nano: 5,
                        time_unix_nano: 6,
                        flags: 1,
                        count: 10,
                        sum: 55.5,
                        quantile_values: vec![
                            summary_data_point::ValueAtQuantile {
                                quantile: 0.0,
                                value: 1.0,
                            },
                            summary_data_point::ValueAtQuantile {
                                quantile: 0.99,
                                value: 9.5,
                            },
                        ],
                    }],
                })),
                ..Default::default()
            },
        ];
        Payload::Metrics(vec![ResourceMetrics {
            resource: Some(resource()),
            scope_metrics: vec![ScopeMetrics {
                scope: Some(InstrumentationScope {
                    name: "memory".into(),
                    ..Default::default()
                }),
                metrics,
                schema_url: String::new(),
            }],
            schema_url: String::new(),
        }])
    }

    /// Decoded by the OTLP receiver's JSON decoder, as a collector would
    /// read the file exporter's lines or an otlphttp `json` request.
    fn decoded(payload: &Payload) -> Payload {
        let (signal, body) = (payload.signal(), encode(payload));
        let (back, dropped) = crate::receivers::otlp::decode_http_body(
            signal,
            "application/json",
            None,
            body.clone().into(),
            usize::MAX,
        )
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&body)));
        assert_eq!(dropped, 0);
        back
    }

    #[test]
    fn logs_read_back_as_they_were_written() {
        let payload = rich_logs();
        assert_eq!(decoded(&payload), payload);
    }

    #[test]
    fn metrics_read_back_as_they_were_written() {
        let payload = rich_metrics();
        assert_eq!(decoded(&payload), payload);
    }

    #[test]
    fn a_log_record_follows_the_otlp_json_mapping() {
        let record = LogRecord {
            time_unix_nano: 1_544_712_660_300_000_000,
            severity_number: 9,
            body: Some(AnyValue {
                value: Some(string_value("hi")),
            }),
            attributes: vec![
                kv("n", any_value::Value::IntValue(10)),
                kv("bytes", any_value::Value::BytesValue(b"hi".to_vec())),
            ],
            trace_id: vec![0x5B, 0x8E, 0xFF, 0xF7],
            span_id: vec![0xEE, 0xE1],
            ..Default::default()
        };
        assert_eq!(
            text(&one_record(record)),
            concat!(
                r#"{"resourceLogs":[{"scopeLogs":[{"logRecords":[{"timeUnixNano":"1544712660300000000","#,
                r#""severityNumber":9,"body":{"stringValue":"hi"},"attributes":[{"key":"n","value":{"intValue":"10"}},"#,
                r#"{"key":"bytes","value":{"bytesValue":"aGk="}}],"traceId":"5b8efff7","spanId":"eee1"}]}]}]}"#
            )
        );
    }

    #[test]
    fn defaults_and_messages_left_empty_are_left_out_but_oneof_members_stay() {
        let record = LogRecord {
            body: Some(AnyValue { value: None }),
            attributes: vec![
                KeyValue {
                    key: "unset".into(),
                    value: Some(AnyValue::default()),
                    ..Default::default()
                },
                kv("zero", any_value::Value::IntValue(0)),
                kv("false", any_value::Value::BoolValue(false)),
                kv("empty", string_value("")),
                kv("d0", any_value::Value::DoubleValue(0.0)),
                kv("arr", any_value::Value::ArrayValue(ArrayValue::default())),
            ],
            ..Default::default()
        };
        let mut payload = one_record(record);
        if let Payload::Logs(rl) = &mut payload {
            rl[0].resource = Some(Resource::default());
            rl[0].scope_logs[0].scope = Some(InstrumentationScope::default());
        }
        assert_eq!(
            text(&payload),
            concat!(
                r#"{"resourceLogs":[{"scopeLogs":[{"logRecords":[{"attributes":[{"key":"unset"},"#,
                r#"{"key":"zero","value":{"intValue":"0"}},{"key":"false","value":{"boolValue":false}},"#,
                r#"{"key":"empty","value":{"stringValue":""}},{"key":"d0","value":{"doubleValue":0.0}},"#,
                r#"{"key":"arr","value":{"arrayValue":{}}}]}]}]}]}"#
            )
        );
        assert_eq!(text(&Payload::Logs(vec![])), "{}");
        assert_eq!(
            text(&one_record(LogRecord::default())),
            r#"{"resourceLogs":[{"scopeLogs":[{"logRecords":[{}]}]}]}"#
        );
    }

    #[test]
    fn optional_fields_and_oneof_members_at_zero_are_written() {
        let point = HistogramDataPoint {
            sum: Some(0.0),
            min: Some(0.0),
            max: Some(-0.0),
            bucket_counts: vec![0, 1],
            ..Default::default()
        };
        assert_eq!(
            text(&one_metric(Data::Histogram(Histogram {
                data_points: vec![point],
                aggregation_temporality: 0,
            }))),
            concat!(
                r#"{"resourceMetrics":[{"scopeMetrics":[{"metrics":[{"name":"m","histogram":{"dataPoints":"#,
                r#"[{"sum":0.0,"bucketCounts":["0","1"],"min":0.0,"max":-0.0}]}}]}]}]}"#
            )
        );
        assert_eq!(
            text(&one_metric(Data::Gauge(Gauge {
                data_points: vec![NumberDataPoint {
                    value: Some(number_data_point::Value::AsInt(0)),
                    ..Default::default()
                }],
            }))),
            r#"{"resourceMetrics":[{"scopeMetrics":[{"metrics":[{"name":"m","gauge":{"dataPoints":[{"asInt":"0"}]}}]}]}]}"#
        );
        assert_eq!(
            text(&one_metric(Data::Sum(Sum::default()))),
            r#"{"resourceMetrics":[{"scopeMetrics":[{"metrics":[{"name":"m","sum":{}}]}]}]}"#
        );
    }

    #[test]
    fn non_finite_doubles_are_proto3_json_strings_wherever_they_are() {
        let nan_point = NumberDataPoint {
            value: Some(number_data_point::Value::AsDouble(f64::NAN)),
            exemplars: vec![Exemplar {
                value: Some(exemplar::Value::AsDouble(f64::INFINITY)),
                ..Default::default()
            }],
            attributes: vec![kv("d", any_value::Value::DoubleValue(f64::NEG_INFINITY))],
            ..Default::default()
        };
        let json = text(&one_metric(Data::Gauge(Gauge {
            data_points: vec![nan_point],
        })));
        assert!(json.contains(r#""asDouble":"NaN""#), "{json}");
        assert!(json.contains(r#""asDouble":"Infinity""#), "{json}");
        assert!(json.contains(r#""doubleValue":"-Infinity""#), "{json}");

        let histogram = HistogramDataPoint {
            sum: Some(f64::NAN),
            min: Some(f64::NEG_INFINITY),
            max: Some(f64::INFINITY),
            explicit_bounds: vec![f64::NEG_INFINITY, 1.0],
            ..Default::default()
        };
        let json = text(&one_metric(Data::Histogram(Histogram {
            data_points: vec![histogram],
            aggregation_temporality: 1,
        })));
        assert!(
            json.contains(r#""sum":"NaN","explicitBounds":["-Infinity",1.0],"#),
            "{json}"
        );
        assert!(
            json.contains(r#""min":"-Infinity","max":"Infinity""#),
            "{json}"
        );

        let summary = SummaryDataPoint {
            sum: f64::NAN,
            quantile_values: vec![summary_data_point::ValueAtQuantile {
                quantile: 0.5,
                value: f64::INFINITY,
            }],
            ..Default::default()
        };
        let json = text(&one_metric(Data::Summary(Summary {
            data_points: vec![summary],
        })));
        assert!(
            json.contains(r#""sum":"NaN","quantileValues":[{"quantile":0.5,"value":"Infinity"}]"#),
            "{json}"
        );
        let exponential = ExponentialHistogramDataPoint {
            zero_threshold: f64::NAN,
            ..Default::default()
        };
        let json = text(&one_metric(Data::ExponentialHistogram(
            ExponentialHistogram {
                data_points: vec![exponential],
                aggregation_temporality: 1,
            },
        )));
        assert!(json.contains(r#""zeroThreshold":"NaN""#), "{json}");
        // Still JSON.
        serde_json::from_str::<serde_json::Value>(&json).expect("valid JSON");
    }

    #[test]
    fn strings_and_numbers_are_written_as_serde_json_writes_them() {
        let mut all_bytes: String = (0u8..0x80).map(char::from).collect();
        all_bytes.push_str("é✓𝄞\u{7F}\u{2028}");
        for s in ["", "plain", "\"", "\\", "a\"b\\c\nd", all_bytes.as_str()] {
            let mut out = Vec::new();
            string(&mut out, s);
            assert_eq!(
                String::from_utf8(out).expect("UTF-8"),
                serde_json::to_string(s).expect("serde_json"),
                "{s:?}"
            );
        }
        for d in [
            0.0,
            -0.0,
            1.0,
            -1.5,
            0.1,
            1e21,
            1e-7,
            123_456_789.125,
            f64::MAX,
            f64::MIN_POSITIVE,
            5e-324,
        ] {
            let mut out = Vec::new();
            double(&mut out, d);
            assert_eq!(
                String::from_utf8(out).expect("UTF-8"),
                serde_json::to_string(&d).expect("serde_json"),
                "{d}"
            );
        }
    }

    #[test]
    fn the_receiver_reads_what_the_exporters_write_for_each_signal() {
        for payload in [rich_logs(), rich_metrics()] {
            let json: serde_json::Value =
                serde_json::from_slice(&encode(&payload)).expect("valid JSON");
            let key = match payload.signal() {
                Signal::Logs => "resourceLogs",
                Signal::Metrics => "resourceMetrics",
            };
            assert!(json.get(key).is_some(), "{json}");
        }
    }
}
