//! Collects OTLP number points per [`MetricDef`]: one `Metric` per def,
//! shaped by its kind, named and described by it.

use std::collections::HashMap;

use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::metrics::v1::{
    metric, number_data_point, AggregationTemporality, Gauge, Metric, NumberDataPoint, Sum,
};

use super::{MetricDef, MetricKind};

/// Point counts per metric at one moment of a [`MetricsBuilder`].
#[derive(Debug)]
pub struct BuilderMark(Vec<usize>);

/// Collects the points of one scrape or report, one `Metric` per
/// [`MetricDef`], in first-use order.
#[derive(Debug)]
pub struct MetricsBuilder {
    time_unix_nano: u64,
    metrics: Vec<Metric>,
    index: HashMap<&'static str, usize>,
}

impl MetricsBuilder {
    /// Points get `time_unix_nano` (one timestamp per scrape).
    pub fn new(time_unix_nano: u64) -> Self {
        MetricsBuilder {
            time_unix_nano,
            metrics: Vec::new(),
            index: HashMap::new(),
        }
    }

    pub fn time_unix_nano(&self) -> u64 {
        self.time_unix_nano
    }

    /// An integer point; `start_unix_nano` is ignored for gauges.
    pub fn int(
        &mut self,
        def: &MetricDef,
        start_unix_nano: u64,
        value: i64,
        attributes: Vec<KeyValue>,
    ) {
        self.push(
            def,
            start_unix_nano,
            number_data_point::Value::AsInt(value),
            attributes,
        );
    }

    /// A floating-point point; `start_unix_nano` is ignored for gauges.
    pub fn double(
        &mut self,
        def: &MetricDef,
        start_unix_nano: u64,
        value: f64,
        attributes: Vec<KeyValue>,
    ) {
        self.push(
            def,
            start_unix_nano,
            number_data_point::Value::AsDouble(value),
            attributes,
        );
    }

    fn push(
        &mut self,
        def: &MetricDef,
        start_unix_nano: u64,
        value: number_data_point::Value,
        attributes: Vec<KeyValue>,
    ) {
        // A key the catalog does not list would leave the docs behind.
        debug_assert!(
            attributes
                .iter()
                .all(|kv| def.attributes.contains(&kv.key.as_str())),
            "{}: attributes {attributes:?} beyond its catalog entry {:?}",
            def.name,
            def.attributes
        );
        let point = NumberDataPoint {
            attributes,
            start_time_unix_nano: if def.kind == MetricKind::Gauge {
                0
            } else {
                start_unix_nano
            },
            time_unix_nano: self.time_unix_nano,
            value: Some(value),
            ..Default::default()
        };
        let idx = *self.index.entry(def.name).or_insert_with(|| {
            self.metrics.push(empty_metric(def));
            self.metrics.len() - 1
        });
        match &mut self.metrics[idx].data {
            Some(metric::Data::Gauge(g)) => g.data_points.push(point),
            Some(metric::Data::Sum(s)) => s.data_points.push(point),
            _ => {}
        }
    }

    pub fn is_empty(&self) -> bool {
        self.metrics.is_empty()
    }

    /// Where the points are now, for [`MetricsBuilder::rollback`].
    pub fn mark(&self) -> BuilderMark {
        BuilderMark(
            self.metrics
                .iter()
                .map(|m| match &m.data {
                    Some(metric::Data::Gauge(g)) => g.data_points.len(),
                    Some(metric::Data::Sum(s)) => s.data_points.len(),
                    _ => 0,
                })
                .collect(),
        )
    }

    /// Drops every point added since `mark` (a cgroup that vanished half
    /// read is not reported in part).
    pub fn rollback(&mut self, mark: BuilderMark) {
        let kept = mark.0.len();
        for removed in self.metrics.drain(kept..) {
            self.index.remove(removed.name.as_str());
        }
        for (m, len) in self.metrics.iter_mut().zip(mark.0) {
            match &mut m.data {
                Some(metric::Data::Gauge(g)) => g.data_points.truncate(len),
                Some(metric::Data::Sum(s)) => s.data_points.truncate(len),
                _ => {}
            }
        }
    }

    pub fn into_metrics(self) -> Vec<Metric> {
        self.metrics
    }
}

fn empty_metric(def: &MetricDef) -> Metric {
    let data = match def.kind {
        MetricKind::Gauge => metric::Data::Gauge(Gauge {
            data_points: Vec::new(),
        }),
        MetricKind::UpDownCounter | MetricKind::Counter => metric::Data::Sum(Sum {
            data_points: Vec::new(),
            aggregation_temporality: AggregationTemporality::Cumulative as i32,
            is_monotonic: def.kind == MetricKind::Counter,
        }),
    };
    Metric {
        name: def.name.to_string(),
        description: def.description.to_string(),
        unit: def.unit.to_string(),
        data: Some(data),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::data::kv_str;

    const USAGE: MetricDef =
        MetricDef::new("test.usage", "By", MetricKind::UpDownCounter, "u").with_attributes(&["a"]);
    const LIMIT: MetricDef = MetricDef::new("test.limit", "By", MetricKind::UpDownCounter, "l");
    const AVAILABLE: MetricDef =
        MetricDef::new("test.available", "By", MetricKind::UpDownCounter, "v");
    const UTILIZATION: MetricDef = MetricDef::new("test.utilization", "1", MetricKind::Gauge, "f");
    const KILLS: MetricDef = MetricDef::new("test.kills", "{kill}", MetricKind::Counter, "k");

    #[test]
    fn rollback_drops_exactly_the_points_since_the_mark() {
        let mut b = MetricsBuilder::new(7);
        b.int(&USAGE, 1, 10, Vec::new());
        let mark = b.mark();
        b.int(&USAGE, 1, 11, Vec::new());
        b.int(&LIMIT, 1, 12, Vec::new());
        b.rollback(mark);
        b.int(&AVAILABLE, 1, 13, Vec::new());
        let metrics = b.into_metrics();
        let shape: Vec<(String, usize)> = metrics
            .iter()
            .map(|m| {
                let n = match &m.data {
                    Some(metric::Data::Gauge(g)) => g.data_points.len(),
                    Some(metric::Data::Sum(s)) => s.data_points.len(),
                    _ => 0,
                };
                (m.name.clone(), n)
            })
            .collect();
        assert_eq!(
            shape,
            [(USAGE.name.to_string(), 1), (AVAILABLE.name.to_string(), 1)]
        );
    }

    #[test]
    fn points_group_by_metric_with_the_right_shape() {
        let mut b = MetricsBuilder::new(100);
        b.int(&USAGE, 7, 1, vec![kv_str("a", "x")]);
        b.double(&UTILIZATION, 7, 0.5, vec![]);
        b.int(&USAGE, 7, 2, vec![kv_str("a", "y")]);
        b.int(&KILLS, 3, 9, vec![]);
        let metrics = b.into_metrics();
        assert_eq!(metrics.len(), 3);
        match &metrics[0].data {
            Some(metric::Data::Sum(s)) => {
                assert!(!s.is_monotonic);
                assert_eq!(s.data_points.len(), 2);
                assert_eq!(s.data_points[1].start_time_unix_nano, 7);
                assert_eq!(s.data_points[1].time_unix_nano, 100);
            }
            other => panic!("expected a sum: {other:?}"),
        }
        match &metrics[1].data {
            Some(metric::Data::Gauge(g)) => {
                assert_eq!(
                    g.data_points[0].start_time_unix_nano, 0,
                    "gauges have no start"
                );
            }
            other => panic!("expected a gauge: {other:?}"),
        }
        match &metrics[2].data {
            Some(metric::Data::Sum(s)) => {
                assert!(s.is_monotonic);
                assert_eq!(
                    s.aggregation_temporality,
                    AggregationTemporality::Cumulative as i32
                );
            }
            other => panic!("expected a sum: {other:?}"),
        }
    }
}
