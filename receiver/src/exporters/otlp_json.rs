//! OTLP/JSON encoding (https://opentelemetry.io/docs/specs/otlp/#json-protobuf-encoding)
//! on top of opentelemetry-proto's serde support, which already gives
//! lowerCamelCase keys, 64-bit integers as strings, enums as integers, hex
//! trace and span ids and base64 bytes. Fixed up here:
//! - fields at their default value are left out, like the collector does
//!   (the serde output lists every field, `"traceId":""` included); oneof
//!   members and proto3 `optional` fields are kept, since there presence
//!   carries meaning;
//! - `null` (an unset optional) is left out;
//! - NaN and infinities, which serde_json turns into `null`, are written as
//!   the strings `"NaN"`, `"Infinity"`, `"-Infinity"` as proto3 JSON requires.
//!
//! Shared by the `file` exporter (one request per line) and the `otlp_http`
//! exporter (`encoding: json`).

use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
use opentelemetry_proto::tonic::logs::v1::ResourceLogs;
use opentelemetry_proto::tonic::metrics::v1::{
    exemplar, metric::Data, number_data_point, Exemplar, ResourceMetrics,
};
use serde::Serialize;
use serde_json::{Map, Value};

use crate::pipeline::Payload;

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct LogsRequest<'a> {
    resource_logs: &'a [ResourceLogs],
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct MetricsRequest<'a> {
    resource_metrics: &'a [ResourceMetrics],
}

/// Keys whose presence matters even at the default value: oneof members
/// and proto3 `optional` fields.
const PRESENCE_KEYS: &[&str] = &[
    "stringValue",
    "boolValue",
    "intValue",
    "doubleValue",
    "arrayValue",
    "kvlistValue",
    "bytesValue",
    "asDouble",
    "asInt",
    "gauge",
    "sum",
    "histogram",
    "exponentialHistogram",
    "summary",
    "min",
    "max",
];

/// 64-bit integer fields, written as strings; `"0"` is their default.
const U64_STRING_KEYS: &[&str] = &[
    "timeUnixNano",
    "startTimeUnixNano",
    "observedTimeUnixNano",
    "count",
    "zeroCount",
];

/// One `ExportLogsServiceRequest` / `ExportMetricsServiceRequest` as compact JSON.
pub fn encode(payload: &Payload) -> serde_json::Result<Vec<u8>> {
    let mut v = match payload {
        Payload::Logs(rl) => {
            let mut v = serde_json::to_value(LogsRequest { resource_logs: rl })?;
            fix_logs(rl, &mut v);
            v
        }
        Payload::Metrics(rm) => {
            let mut v = serde_json::to_value(MetricsRequest {
                resource_metrics: rm,
            })?;
            fix_metrics(rm, &mut v);
            v
        }
    };
    strip_defaults(&mut v);
    serde_json::to_vec(&v)
}

fn non_finite(d: f64) -> Option<Value> {
    if d.is_nan() {
        Some(Value::from("NaN"))
    } else if d == f64::INFINITY {
        Some(Value::from("Infinity"))
    } else if d == f64::NEG_INFINITY {
        Some(Value::from("-Infinity"))
    } else {
        None
    }
}

/// Sets `obj[key]` to the proto3 JSON string of `d` when it is not finite.
fn fix_double(obj: Option<&mut Value>, key: &str, d: f64) {
    if let (Some(Value::Object(m)), Some(s)) = (obj, non_finite(d)) {
        m.insert(key.to_string(), s);
    }
}

fn fix_any(v: &AnyValue, json: Option<&mut Value>) {
    let Some(json) = json else { return };
    match &v.value {
        Some(any_value::Value::DoubleValue(d)) => fix_double(Some(json), "doubleValue", *d),
        Some(any_value::Value::ArrayValue(a)) => {
            for (i, item) in a.values.iter().enumerate() {
                fix_any(item, json.pointer_mut(&format!("/arrayValue/values/{i}")));
            }
        }
        Some(any_value::Value::KvlistValue(kv)) => {
            fix_attrs(&kv.values, json.pointer_mut("/kvlistValue/values"));
        }
        _ => {}
    }
}

fn fix_attrs(attrs: &[KeyValue], json: Option<&mut Value>) {
    let Some(Value::Array(items)) = json else {
        return;
    };
    for (kv, item) in attrs.iter().zip(items.iter_mut()) {
        if let Some(v) = &kv.value {
            fix_any(v, item.get_mut("value"));
        }
    }
}

fn fix_logs(rls: &[ResourceLogs], json: &mut Value) {
    for (i, rl) in rls.iter().enumerate() {
        let Some(rj) = json.pointer_mut(&format!("/resourceLogs/{i}")) else {
            continue;
        };
        if let Some(r) = &rl.resource {
            fix_attrs(&r.attributes, rj.pointer_mut("/resource/attributes"));
        }
        for (j, sl) in rl.scope_logs.iter().enumerate() {
            let Some(sj) = rj.pointer_mut(&format!("/scopeLogs/{j}")) else {
                continue;
            };
            if let Some(s) = &sl.scope {
                fix_attrs(&s.attributes, sj.pointer_mut("/scope/attributes"));
            }
            for (k, r) in sl.log_records.iter().enumerate() {
                let Some(lj) = sj.pointer_mut(&format!("/logRecords/{k}")) else {
                    continue;
                };
                if let Some(b) = &r.body {
                    fix_any(b, lj.get_mut("body"));
                }
                fix_attrs(&r.attributes, lj.get_mut("attributes"));
            }
        }
    }
}

fn fix_exemplars(ex: &[Exemplar], json: Option<&mut Value>) {
    let Some(Value::Array(items)) = json else {
        return;
    };
    for (e, item) in ex.iter().zip(items.iter_mut()) {
        if let Some(exemplar::Value::AsDouble(d)) = e.value {
            fix_double(Some(&mut *item), "asDouble", d);
        }
        fix_attrs(&e.filtered_attributes, item.get_mut("filteredAttributes"));
    }
}

fn fix_optional(obj: &mut Value, key: &str, d: Option<f64>) {
    if let Some(d) = d {
        fix_double(Some(obj), key, d);
    }
}

fn fix_metrics(rms: &[ResourceMetrics], json: &mut Value) {
    for (i, rm) in rms.iter().enumerate() {
        let Some(rj) = json.pointer_mut(&format!("/resourceMetrics/{i}")) else {
            continue;
        };
        if let Some(r) = &rm.resource {
            fix_attrs(&r.attributes, rj.pointer_mut("/resource/attributes"));
        }
        for (j, sm) in rm.scope_metrics.iter().enumerate() {
            let Some(sj) = rj.pointer_mut(&format!("/scopeMetrics/{j}")) else {
                continue;
            };
            if let Some(s) = &sm.scope {
                fix_attrs(&s.attributes, sj.pointer_mut("/scope/attributes"));
            }
            for (k, m) in sm.metrics.iter().enumerate() {
                let Some(mj) = sj.pointer_mut(&format!("/metrics/{k}")) else {
                    continue;
                };
                fix_metric_data(m.data.as_ref(), mj);
            }
        }
    }
}

fn fix_metric_data(data: Option<&Data>, mj: &mut Value) {
    match data {
        Some(Data::Gauge(g)) => fix_numbers(&g.data_points, mj.pointer_mut("/gauge/dataPoints")),
        Some(Data::Sum(s)) => fix_numbers(&s.data_points, mj.pointer_mut("/sum/dataPoints")),
        Some(Data::Histogram(h)) => {
            let Some(Value::Array(items)) = mj.pointer_mut("/histogram/dataPoints") else {
                return;
            };
            for (p, pj) in h.data_points.iter().zip(items.iter_mut()) {
                fix_optional(pj, "sum", p.sum);
                fix_optional(pj, "min", p.min);
                fix_optional(pj, "max", p.max);
                if let Some(Value::Array(bounds)) = pj.get_mut("explicitBounds") {
                    for (b, bj) in p.explicit_bounds.iter().zip(bounds.iter_mut()) {
                        if let Some(s) = non_finite(*b) {
                            *bj = s;
                        }
                    }
                }
                fix_attrs(&p.attributes, pj.get_mut("attributes"));
                fix_exemplars(&p.exemplars, pj.get_mut("exemplars"));
            }
        }
        Some(Data::ExponentialHistogram(h)) => {
            let Some(Value::Array(items)) = mj.pointer_mut("/exponentialHistogram/dataPoints")
            else {
                return;
            };
            for (p, pj) in h.data_points.iter().zip(items.iter_mut()) {
                fix_optional(pj, "sum", p.sum);
                fix_optional(pj, "min", p.min);
                fix_optional(pj, "max", p.max);
                fix_double(Some(&mut *pj), "zeroThreshold", p.zero_threshold);
                fix_attrs(&p.attributes, pj.get_mut("attributes"));
                fix_exemplars(&p.exemplars, pj.get_mut("exemplars"));
            }
        }
        Some(Data::Summary(s)) => {
            let Some(Value::Array(items)) = mj.pointer_mut("/summary/dataPoints") else {
                return;
            };
            for (p, pj) in s.data_points.iter().zip(items.iter_mut()) {
                fix_double(Some(&mut *pj), "sum", p.sum);
                if let Some(Value::Array(qs)) = pj.get_mut("quantileValues") {
                    for (q, qj) in p.quantile_values.iter().zip(qs.iter_mut()) {
                        fix_double(Some(&mut *qj), "quantile", q.quantile);
                        fix_double(Some(&mut *qj), "value", q.value);
                    }
                }
                fix_attrs(&p.attributes, pj.get_mut("attributes"));
            }
        }
        None => {}
    }
}

fn fix_numbers(
    points: &[opentelemetry_proto::tonic::metrics::v1::NumberDataPoint],
    json: Option<&mut Value>,
) {
    let Some(Value::Array(items)) = json else {
        return;
    };
    for (p, pj) in points.iter().zip(items.iter_mut()) {
        if let Some(number_data_point::Value::AsDouble(d)) = p.value {
            fix_double(Some(&mut *pj), "asDouble", d);
        }
        fix_attrs(&p.attributes, pj.get_mut("attributes"));
        fix_exemplars(&p.exemplars, pj.get_mut("exemplars"));
    }
}

fn is_default(key: &str, v: &Value) -> bool {
    match v {
        Value::Null => true,
        _ if PRESENCE_KEYS.contains(&key) => false,
        Value::Bool(b) => !b,
        Value::Number(n) => n.as_f64() == Some(0.0),
        Value::String(s) => s.is_empty() || (s == "0" && U64_STRING_KEYS.contains(&key)),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
    }
}

/// Removes default-valued fields, innermost first, so that objects
/// emptied by it go too. Array elements are never removed.
pub(crate) fn strip_defaults(v: &mut Value) {
    match v {
        Value::Object(map) => {
            let mut kept = Map::with_capacity(map.len());
            for (k, mut child) in std::mem::take(map) {
                strip_defaults(&mut child);
                if !is_default(&k, &child) {
                    kept.insert(k, child);
                }
            }
            *map = kept;
        }
        Value::Array(items) => items.iter_mut().for_each(strip_defaults),
        _ => {}
    }
}
