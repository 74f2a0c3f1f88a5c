//! Every metric the `journald` receiver emits: its catalog, which the
//! `journald` section of docs/configuration.md mirrors (checked by
//! `receivers::metric_docs_tests`).

use opentelemetry_proto::tonic::metrics::v1::ResourceMetrics;

use crate::clock::unix_now_nanos;
use crate::metric_catalog::{self, MetricDef, MetricKind, MetricsBuilder};
use crate::patterns::match_counts::MatchCounts;
pub use crate::patterns::match_counts::OOM_LOG_MATCHES;
use crate::pipeline::data::scoped_metrics;

pub const JOURNALD_ENTRIES_LOST: MetricDef = MetricDef::new(
    "oomscope.journald.entries.lost",
    "{entry}",
    MetricKind::Counter,
    "Journal entries removed (vacuumed) before they were read",
);

pub const JOURNALD_FILES_FAILED: MetricDef = MetricDef::new(
    "oomscope.journald.files.failed",
    "{file}",
    MetricKind::Counter,
    "Journal files found unreadable: corrupt or truncated headers, files truncated while read",
);

/// The whole catalog, in docs order.
pub const ALL: &[MetricDef] = &[
    JOURNALD_ENTRIES_LOST,
    JOURNALD_FILES_FAILED,
    OOM_LOG_MATCHES,
];

/// The receiver's counters, cumulative since it started.
#[derive(Debug, Default, Clone)]
pub struct Counters {
    /// Entries known lost (a gap of unknown size counts one).
    pub entries_lost: u64,
    pub files_failed: u64,
    pub matches: MatchCounts,
}

impl Counters {
    pub fn metrics(&self, start_unix_nano: u64) -> ResourceMetrics {
        let mut b = MetricsBuilder::new(unix_now_nanos());
        b.int(
            &JOURNALD_ENTRIES_LOST,
            start_unix_nano,
            metric_catalog::int(self.entries_lost),
            Vec::new(),
        );
        b.int(
            &JOURNALD_FILES_FAILED,
            start_unix_nano,
            metric_catalog::int(self.files_failed),
            Vec::new(),
        );
        self.matches.record(&mut b, start_unix_nano);
        scoped_metrics(super::SCOPE_NAME, None, b.into_metrics())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metric_catalog::checks::{assert_emitted_per_catalog, assert_well_formed};

    #[test]
    fn the_counters_follow_the_catalog() {
        assert_well_formed(ALL);
        let mut c = Counters::default();
        c.matches.count("java.heap", "java");
        assert_emitted_per_catalog(&[c.metrics(1)], ALL);
    }
}
