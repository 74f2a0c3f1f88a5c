//! Every metric the `memory` receiver emits (one catalog, which
//! docs/metrics.md mirrors and a test checks), and a small builder that
//! collects OTLP number points per metric.

use std::collections::HashMap;

use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::metrics::v1::{
    metric, number_data_point, AggregationTemporality, Gauge, Metric, NumberDataPoint, Sum,
};

/// The OTLP shape of a metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A level sampled at scrape time (no start time).
    Gauge,
    /// A level that goes up and down (semconv UpDownCounter): a cumulative,
    /// non-monotonic Sum.
    UpDownCounter,
    /// A kernel counter: a cumulative, monotonic Sum.
    Counter,
}

impl Kind {
    /// How docs/metrics.md writes it.
    pub fn doc_name(self) -> &'static str {
        match self {
            Kind::Gauge => "Gauge",
            Kind::UpDownCounter => "Sum (non-monotonic)",
            Kind::Counter => "Sum (monotonic)",
        }
    }
}

/// One metric of the catalog.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MetricDef {
    pub name: &'static str,
    pub unit: &'static str,
    pub kind: Kind,
    pub description: &'static str,
}

const fn def(
    name: &'static str,
    unit: &'static str,
    kind: Kind,
    description: &'static str,
) -> MetricDef {
    MetricDef {
        name,
        unit,
        kind,
        description,
    }
}

// System: /proc/meminfo, /proc/vmstat.
pub const SYSTEM_MEMORY_USAGE: MetricDef = def(
    "system.memory.usage",
    "By",
    Kind::UpDownCounter,
    "Memory by state; the states sum to MemTotal",
);
pub const SYSTEM_MEMORY_LIMIT: MetricDef = def(
    "system.memory.limit",
    "By",
    Kind::UpDownCounter,
    "Total usable memory (MemTotal)",
);
pub const SYSTEM_MEMORY_UTILIZATION: MetricDef = def(
    "system.memory.utilization",
    "1",
    Kind::Gauge,
    "Fraction of MemTotal by state",
);
pub const SYSTEM_MEMORY_AVAILABLE: MetricDef = def(
    "system.memory.linux.available",
    "By",
    Kind::UpDownCounter,
    "The kernel's estimate of memory available without swapping (MemAvailable)",
);
pub const SYSTEM_PAGING_USAGE: MetricDef = def(
    "system.paging.usage",
    "By",
    Kind::UpDownCounter,
    "Swap space used and free",
);
pub const SYSTEM_PAGING_UTILIZATION: MetricDef = def(
    "system.paging.utilization",
    "1",
    Kind::Gauge,
    "Fraction of swap space used and free",
);
pub const SYSTEM_PAGING_FAULTS: MetricDef = def(
    "system.paging.faults",
    "{fault}",
    Kind::Counter,
    "Page faults since boot",
);
pub const SYSTEM_PAGING_OPERATIONS: MetricDef = def(
    "system.paging.operations",
    "{operation}",
    Kind::Counter,
    "Pages swapped in and out since boot",
);
pub const SYSTEM_OOM_KILLS: MetricDef = def(
    "system.memory.linux.oom_kills",
    "{kill}",
    Kind::Counter,
    "OOM kills since boot, system-wide and in cgroups",
);
pub const SYSTEM_ALLOCATION_STALLS: MetricDef = def(
    "system.memory.linux.allocation_stalls",
    "{stall}",
    Kind::Counter,
    "Allocations that entered direct reclaim since boot (all zones)",
);
pub const SYSTEM_RECLAIM_SCANNED: MetricDef = def(
    "system.memory.linux.reclaim.scanned",
    "{page}",
    Kind::Counter,
    "Pages scanned by reclaim since boot",
);
pub const SYSTEM_RECLAIM_RECLAIMED: MetricDef = def(
    "system.memory.linux.reclaim.reclaimed",
    "{page}",
    Kind::Counter,
    "Pages reclaimed since boot",
);

// PSI: /proc/pressure/memory.
pub const SYSTEM_PSI_AVG: MetricDef = def(
    "system.memory.psi.avg",
    "1",
    Kind::Gauge,
    "Fraction of wall time in which tasks stalled on memory, averaged over a window",
);
pub const SYSTEM_PSI_STALL_TIME: MetricDef = def(
    "system.memory.psi.stall_time",
    "s",
    Kind::Counter,
    "Total time tasks stalled on memory since boot",
);

// Processes: /proc/PID/*.
pub const PROCESS_MEMORY_USAGE: MetricDef = def(
    "process.memory.usage",
    "By",
    Kind::UpDownCounter,
    "Resident memory (RSS)",
);
pub const PROCESS_MEMORY_VIRTUAL: MetricDef = def(
    "process.memory.virtual",
    "By",
    Kind::UpDownCounter,
    "Virtual memory size",
);
pub const PROCESS_MEMORY_SWAP: MetricDef = def(
    "process.memory.swap",
    "By",
    Kind::UpDownCounter,
    "Anonymous memory swapped out (VmSwap)",
);
pub const PROCESS_PAGING_FAULTS: MetricDef = def(
    "process.paging.faults",
    "{fault}",
    Kind::Counter,
    "Page faults of the process since it started",
);
pub const PROCESS_OOM_SCORE: MetricDef = def(
    "process.linux.oom_score",
    "1",
    Kind::Gauge,
    "The OOM killer's badness score (0-2000; the highest is killed first)",
);
pub const PROCESS_OOM_SCORE_ADJ: MetricDef = def(
    "process.linux.oom_score_adj",
    "1",
    Kind::Gauge,
    "The OOM score adjustment (-1000 never kill .. 1000)",
);

// Cgroups: the memory controller's files.
pub const CGROUP_MEMORY_USAGE: MetricDef = def(
    "cgroup.memory.usage",
    "By",
    Kind::UpDownCounter,
    "Memory charged to the cgroup and its descendants",
);
pub const CGROUP_MEMORY_LIMIT: MetricDef = def(
    "cgroup.memory.limit",
    "By",
    Kind::UpDownCounter,
    "The hard limit; absent when unlimited",
);
pub const CGROUP_MEMORY_HIGH: MetricDef = def(
    "cgroup.memory.high",
    "By",
    Kind::UpDownCounter,
    "The throttling threshold (v2 memory.high); absent when unlimited",
);
pub const CGROUP_MEMORY_HEADROOM: MetricDef = def(
    "cgroup.memory.headroom",
    "By",
    Kind::Gauge,
    "limit - usage; negative when the limit was lowered below usage",
);
pub const CGROUP_MEMORY_TIME_TO_LIMIT: MetricDef = def(
    "cgroup.memory.time_to_limit",
    "s",
    Kind::Gauge,
    "Seconds until usage reaches the limit at the recent growth rate; absent when not growing",
);
pub const CGROUP_MEMORY_WORKING_SET: MetricDef = def(
    "cgroup.memory.working_set",
    "By",
    Kind::UpDownCounter,
    "usage - inactive_file, as the kubelet computes it",
);
pub const CGROUP_MEMORY_SWAP_USAGE: MetricDef = def(
    "cgroup.memory.swap.usage",
    "By",
    Kind::UpDownCounter,
    "Swap used by the cgroup",
);
pub const CGROUP_MEMORY_SWAP_LIMIT: MetricDef = def(
    "cgroup.memory.swap.limit",
    "By",
    Kind::UpDownCounter,
    "The swap limit (v2 memory.swap.max); absent when unlimited",
);
pub const CGROUP_MEMORY_EVENTS: MetricDef = def(
    "cgroup.memory.events",
    "{event}",
    Kind::Counter,
    "Memory events of the cgroup and its descendants since it was created",
);
pub const CGROUP_MEMORY_UNDER_OOM: MetricDef = def(
    "cgroup.memory.under_oom",
    "1",
    Kind::Gauge,
    "1 while the cgroup is under OOM with the OOM killer disabled (v1)",
);
pub const CGROUP_MEMORY_BREAKDOWN: MetricDef = def(
    "cgroup.memory.breakdown",
    "By",
    Kind::UpDownCounter,
    "Key memory.stat figures by type (overlapping: do not sum)",
);
pub const CGROUP_PAGING_FAULTS: MetricDef = def(
    "cgroup.paging.faults",
    "{fault}",
    Kind::Counter,
    "Page faults in the cgroup since it was created",
);
pub const CGROUP_PSI_AVG: MetricDef = def(
    "cgroup.memory.psi.avg",
    "1",
    Kind::Gauge,
    "Fraction of wall time in which the cgroup's tasks stalled on memory (v2)",
);
pub const CGROUP_PSI_STALL_TIME: MetricDef = def(
    "cgroup.memory.psi.stall_time",
    "s",
    Kind::Counter,
    "Total time the cgroup's tasks stalled on memory (v2)",
);

/// The whole catalog, in docs order.
pub const ALL: &[MetricDef] = &[
    SYSTEM_MEMORY_USAGE,
    SYSTEM_MEMORY_LIMIT,
    SYSTEM_MEMORY_UTILIZATION,
    SYSTEM_MEMORY_AVAILABLE,
    SYSTEM_PAGING_USAGE,
    SYSTEM_PAGING_UTILIZATION,
    SYSTEM_PAGING_FAULTS,
    SYSTEM_PAGING_OPERATIONS,
    SYSTEM_OOM_KILLS,
    SYSTEM_ALLOCATION_STALLS,
    SYSTEM_RECLAIM_SCANNED,
    SYSTEM_RECLAIM_RECLAIMED,
    SYSTEM_PSI_AVG,
    SYSTEM_PSI_STALL_TIME,
    PROCESS_MEMORY_USAGE,
    PROCESS_MEMORY_VIRTUAL,
    PROCESS_MEMORY_SWAP,
    PROCESS_PAGING_FAULTS,
    PROCESS_OOM_SCORE,
    PROCESS_OOM_SCORE_ADJ,
    CGROUP_MEMORY_USAGE,
    CGROUP_MEMORY_LIMIT,
    CGROUP_MEMORY_HIGH,
    CGROUP_MEMORY_HEADROOM,
    CGROUP_MEMORY_TIME_TO_LIMIT,
    CGROUP_MEMORY_WORKING_SET,
    CGROUP_MEMORY_SWAP_USAGE,
    CGROUP_MEMORY_SWAP_LIMIT,
    CGROUP_MEMORY_EVENTS,
    CGROUP_MEMORY_UNDER_OOM,
    CGROUP_MEMORY_BREAKDOWN,
    CGROUP_PAGING_FAULTS,
    CGROUP_PSI_AVG,
    CGROUP_PSI_STALL_TIME,
];

/// A kernel figure as an OTLP integer (they never reach i64::MAX in practice;
/// saturate rather than wrap if one does).
pub fn int(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// Point counts per metric at one moment of a [`MetricsBuilder`].
#[derive(Debug)]
pub struct BuilderMark(Vec<usize>);

/// Collects the points of one scrape, one `Metric` per catalog entry, in
/// first-use order.
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
        let point = NumberDataPoint {
            attributes,
            start_time_unix_nano: if def.kind == Kind::Gauge {
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
        Kind::Gauge => metric::Data::Gauge(Gauge {
            data_points: Vec::new(),
        }),
        Kind::UpDownCounter | Kind::Counter => metric::Data::Sum(Sum {
            data_points: Vec::new(),
            aggregation_temporality: AggregationTemporality::Cumulative as i32,
            is_monotonic: def.kind == Kind::Counter,
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

    #[test]
    fn rollback_drops_exactly_the_points_since_the_mark() {
        let mut b = MetricsBuilder::new(7);
        b.int(&SYSTEM_MEMORY_USAGE, 1, 10, Vec::new());
        let mark = b.mark();
        b.int(&SYSTEM_MEMORY_USAGE, 1, 11, Vec::new());
        b.int(&SYSTEM_MEMORY_LIMIT, 1, 12, Vec::new());
        b.rollback(mark);
        b.int(&SYSTEM_MEMORY_AVAILABLE, 1, 13, Vec::new());
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
            [
                (SYSTEM_MEMORY_USAGE.name.to_string(), 1),
                (SYSTEM_MEMORY_AVAILABLE.name.to_string(), 1)
            ]
        );
    }

    #[test]
    fn points_group_by_metric_with_the_right_shape() {
        let mut b = MetricsBuilder::new(100);
        b.int(&SYSTEM_MEMORY_USAGE, 7, 1, vec![kv_str("a", "x")]);
        b.double(&SYSTEM_MEMORY_UTILIZATION, 7, 0.5, vec![]);
        b.int(&SYSTEM_MEMORY_USAGE, 7, 2, vec![kv_str("a", "y")]);
        b.int(&SYSTEM_OOM_KILLS, 3, 9, vec![]);
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

    #[test]
    fn catalog_names_are_unique() {
        let mut names: Vec<&str> = ALL.iter().map(|d| d.name).collect();
        names.sort_unstable();
        let n = names.len();
        names.dedup();
        assert_eq!(names.len(), n);
    }

    /// docs/metrics.md has one row per catalog entry with the same unit and
    /// type, and no other metric rows.
    #[test]
    fn docs_table_matches_the_catalog() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/metrics.md");
        let text = std::fs::read_to_string(path).expect("docs/metrics.md");
        let mut rows = Vec::new();
        for line in text.lines() {
            let cells: Vec<&str> = line.split('|').map(str::trim).collect();
            // | `name` | unit | type | attributes | source | meaning |
            if cells.len() >= 7 && cells[1].starts_with('`') && cells[1].ends_with('`') {
                let name = cells[1].trim_matches('`');
                if name.contains('.') && (cells[3].starts_with("Sum") || cells[3] == "Gauge") {
                    rows.push((
                        name.to_string(),
                        cells[2].trim_matches('`').to_string(),
                        cells[3].to_string(),
                    ));
                }
            }
        }
        for d in ALL {
            let found: Vec<_> = rows.iter().filter(|r| r.0 == d.name).collect();
            assert_eq!(found.len(), 1, "{} must have exactly one row", d.name);
            assert_eq!(found[0].1, d.unit, "unit of {}", d.name);
            assert_eq!(found[0].2, d.kind.doc_name(), "type of {}", d.name);
        }
        for r in &rows {
            assert!(
                ALL.iter().any(|d| d.name == r.0),
                "{} is documented but not emitted",
                r.0
            );
        }
    }
}
