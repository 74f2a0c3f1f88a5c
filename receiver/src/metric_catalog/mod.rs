//! How a receiver defines the metrics it emits: one [`MetricDef`] constant
//! per metric, gathered in one catalog per receiver
//! (`receivers/<type>/metrics.rs`, `ALL`), and emitted through a
//! [`MetricsBuilder`], so the name, unit, type and description on the wire
//! are the catalog's. The docs' metric tables are checked against every
//! catalog (`receivers::metric_docs_tests`).

mod builder;
#[cfg(test)]
pub mod checks;

pub use builder::{BuilderMark, MetricsBuilder};

/// The OTLP shape of a metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricKind {
    /// A level sampled at scrape time (no start time).
    Gauge,
    /// A level that goes up and down (semconv UpDownCounter): a cumulative,
    /// non-monotonic Sum.
    UpDownCounter,
    /// A count that only grows: a cumulative, monotonic Sum.
    Counter,
}

impl MetricKind {
    /// How the docs' metric tables write it (their `type` column).
    pub fn doc_name(self) -> &'static str {
        match self {
            MetricKind::Gauge => "Gauge",
            MetricKind::UpDownCounter => "Sum (non-monotonic)",
            MetricKind::Counter => "Sum (monotonic)",
        }
    }
}

/// One metric a receiver emits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MetricDef {
    pub name: &'static str,
    pub unit: &'static str,
    pub kind: MetricKind,
    pub description: &'static str,
    /// Every attribute key a point may carry (a point carries a subset).
    pub attributes: &'static [&'static str],
    /// The most distinct series (attribute sets) the receiver keeps; a later
    /// series is counted in an overflow series (its open-ended attribute set
    /// to [`OVERFLOW_VALUE`]). `None` where the series are bounded by the
    /// data itself (kernel states, files of a fixed layout) or by
    /// configuration (`max_cgroups`, `processes.top`).
    pub cardinality_cap: Option<usize>,
}

impl MetricDef {
    /// A metric without attributes or cap; see [`MetricDef::with_attributes`]
    /// and [`MetricDef::with_cardinality_cap`].
    pub const fn new(
        name: &'static str,
        unit: &'static str,
        kind: MetricKind,
        description: &'static str,
    ) -> Self {
        MetricDef {
            name,
            unit,
            kind,
            description,
            attributes: &[],
            cardinality_cap: None,
        }
    }

    pub const fn with_attributes(self, attributes: &'static [&'static str]) -> Self {
        MetricDef { attributes, ..self }
    }

    pub const fn with_cardinality_cap(self, cap: usize) -> Self {
        MetricDef {
            cardinality_cap: Some(cap),
            ..self
        }
    }
}

/// The value an open-ended attribute (a victim's comm, a pattern name)
/// takes in the overflow series of a metric past its
/// [`MetricDef::cardinality_cap`].
pub const OVERFLOW_VALUE: &str = "_other";

/// A count as an OTLP integer (counts never reach i64::MAX in practice;
/// saturate rather than wrap if one does).
pub fn int(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}
