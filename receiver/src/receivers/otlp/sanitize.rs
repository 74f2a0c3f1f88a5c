//! Items the OTLP specification calls invalid are dropped one by one, and the
//! sender is told how many through `partial_success` (the spec's answer for
//! "some of the data was rejected"), instead of refusing the whole request as
//! the collector's strict decoding does.
//!
//! Invalid here: log records whose `trace_id` is not 0 or 16 bytes or whose
//! `span_id` is not 0 or 8 bytes; histogram points whose `bucket_counts` do
//! not have one entry more than `explicit_bounds` (when both are given);
//! gauge and sum points without a value (OTLP: "a point is considered invalid
//! when one of the recognized value fields is not present"; also what an
//! OTLP/JSON value opentelemetry-proto cannot read, such as `"asDouble":"NaN"`,
//! becomes); metrics without a name.

use opentelemetry_proto::tonic::logs::v1::LogRecord;
use opentelemetry_proto::tonic::metrics::v1::{metric::Data, HistogramDataPoint};

use crate::pipeline::data::metric_point_count;
use crate::pipeline::Payload;

/// What was dropped from one request.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(super) struct Dropped {
    pub items: u64,
    /// Why, for `partial_success.error_message` (first reason; bounded).
    pub message: String,
}

fn valid_ids(r: &LogRecord) -> bool {
    matches!(r.trace_id.len(), 0 | 16) && matches!(r.span_id.len(), 0 | 8)
}

fn valid_histogram_point(p: &HistogramDataPoint) -> bool {
    p.explicit_bounds.is_empty()
        || p.bucket_counts.is_empty()
        || p.bucket_counts.len() == p.explicit_bounds.len() + 1
}

/// Removes invalid items in place; `None` when everything was valid (the
/// common case costs one pass over the records and no allocation).
pub(super) fn drop_invalid(payload: &mut Payload) -> Option<Dropped> {
    let mut dropped = Dropped::default();
    let mut note = |n: usize, why: &str| {
        if n > 0 {
            dropped.items += n as u64;
            if dropped.message.is_empty() {
                dropped.message = why.to_string();
            }
        }
    };
    match payload {
        Payload::Logs(resource_logs) => {
            for sl in resource_logs
                .iter_mut()
                .flat_map(|rl| rl.scope_logs.iter_mut())
            {
                if sl.log_records.iter().all(valid_ids) {
                    continue;
                }
                let before = sl.log_records.len();
                sl.log_records.retain(valid_ids);
                note(
                    before - sl.log_records.len(),
                    "log records with a trace_id other than 16 bytes or a span_id other than 8 bytes were dropped",
                );
            }
        }
        Payload::Metrics(resource_metrics) => {
            for sm in resource_metrics
                .iter_mut()
                .flat_map(|rm| rm.scope_metrics.iter_mut())
            {
                // One pass: count the points of unnamed metrics as they go.
                let mut unnamed_points = 0;
                sm.metrics.retain(|m| {
                    if m.name.is_empty() {
                        unnamed_points += metric_point_count(m);
                        false
                    } else {
                        true
                    }
                });
                note(unnamed_points, "metrics without a name were dropped");
                for m in &mut sm.metrics {
                    let points = match &mut m.data {
                        Some(Data::Histogram(h)) => {
                            let before = h.data_points.len();
                            h.data_points.retain(valid_histogram_point);
                            note(
                                before - h.data_points.len(),
                                "histogram points whose bucket_counts do not match explicit_bounds were dropped",
                            );
                            continue;
                        }
                        Some(Data::Gauge(g)) => &mut g.data_points,
                        Some(Data::Sum(s)) => &mut s.data_points,
                        _ => continue,
                    };
                    let before = points.len();
                    points.retain(|p| p.value.is_some());
                    note(
                        before - points.len(),
                        "gauge or sum points without a value were dropped",
                    );
                }
            }
        }
    }
    (dropped.items > 0).then_some(dropped)
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::logs::v1::{ResourceLogs, ScopeLogs};
    use opentelemetry_proto::tonic::metrics::v1::{
        Histogram, Metric, ResourceMetrics, ScopeMetrics,
    };

    fn log(trace: usize, span: usize) -> LogRecord {
        LogRecord {
            trace_id: vec![1; trace],
            span_id: vec![1; span],
            ..Default::default()
        }
    }

    #[test]
    fn valid_data_is_untouched() {
        let mut p = Payload::Logs(vec![ResourceLogs {
            scope_logs: vec![ScopeLogs {
                log_records: vec![log(0, 0), log(16, 8)],
                ..Default::default()
            }],
            ..Default::default()
        }]);
        let before = p.clone();
        assert_eq!(drop_invalid(&mut p), None);
        assert_eq!(p, before);
    }

    #[test]
    fn bad_ids_are_dropped_and_counted() {
        let mut p = Payload::Logs(vec![ResourceLogs {
            scope_logs: vec![ScopeLogs {
                log_records: vec![log(16, 8), log(3, 0), log(0, 9), log(0, 0)],
                ..Default::default()
            }],
            ..Default::default()
        }]);
        let d = drop_invalid(&mut p).expect("dropped");
        assert_eq!(d.items, 2);
        assert!(d.message.contains("trace_id"));
        assert_eq!(p.item_count(), 2);
    }

    /// Seen while fixing what the `otlp_http` fuzz target found (metric data
    /// vanishing through opentelemetry-proto's flattened oneof): a point
    /// whose value could not be read (`"asDouble":"NaN"` in OTLP/JSON, or
    /// none sent) went on without a value and without a word to the sender.
    #[test]
    fn number_points_without_a_value_are_dropped_and_counted() {
        use opentelemetry_proto::tonic::metrics::v1::{
            number_data_point, Gauge, NumberDataPoint, Sum,
        };
        let point = |value: Option<f64>| NumberDataPoint {
            value: value.map(number_data_point::Value::AsDouble),
            ..Default::default()
        };
        let metric = |name: &str, data| Metric {
            name: name.into(),
            data: Some(data),
            ..Default::default()
        };
        let mut p = Payload::Metrics(vec![ResourceMetrics {
            scope_metrics: vec![ScopeMetrics {
                metrics: vec![
                    metric(
                        "g",
                        Data::Gauge(Gauge {
                            data_points: vec![point(Some(1.0)), point(None)],
                        }),
                    ),
                    metric(
                        "s",
                        Data::Sum(Sum {
                            data_points: vec![point(None), point(Some(f64::NAN))],
                            ..Default::default()
                        }),
                    ),
                ],
                ..Default::default()
            }],
            ..Default::default()
        }]);
        let d = drop_invalid(&mut p).expect("dropped");
        assert_eq!(d.items, 2);
        assert!(d.message.contains("without a value"), "{}", d.message);
        assert_eq!(p.item_count(), 2);
        // JSON that opentelemetry-proto reads without the value.
        let body = br#"{"resourceMetrics":[{"scopeMetrics":[{"metrics":[{"name":"g",
            "gauge":{"dataPoints":[{"asDouble":"NaN"},{"asDouble":2.5}]}}]}]}]}"#;
        let (payload, dropped) = crate::receivers::otlp::decode_http_body(
            crate::pipeline::Signal::Metrics,
            "application/json",
            None,
            bytes::Bytes::from_static(body),
            1 << 20,
        )
        .expect("decodes");
        assert_eq!((payload.item_count(), dropped), (1, 1));
    }

    #[test]
    fn bad_histograms_and_unnamed_metrics_are_dropped() {
        let point = |bounds: usize, counts: usize| HistogramDataPoint {
            explicit_bounds: vec![1.0; bounds],
            bucket_counts: vec![1; counts],
            ..Default::default()
        };
        let hist = |name: &str, points| Metric {
            name: name.into(),
            data: Some(Data::Histogram(Histogram {
                data_points: points,
                aggregation_temporality: 2,
            })),
            ..Default::default()
        };
        let mut p = Payload::Metrics(vec![ResourceMetrics {
            scope_metrics: vec![ScopeMetrics {
                metrics: vec![
                    hist("ok", vec![point(2, 3), point(2, 2), point(0, 0)]),
                    hist("", vec![point(1, 2)]),
                ],
                ..Default::default()
            }],
            ..Default::default()
        }]);
        let d = drop_invalid(&mut p).expect("dropped");
        assert_eq!(d.items, 2);
        assert_eq!(p.item_count(), 2);
    }
}
