//! `oom.log.matches`: log records the pattern library matched, per
//! (`oom.pattern`, `oom.runtime`). Defined once for every receiver that runs
//! the library (`kmsg`, `filelog`): one metric whichever receiver read the
//! line.

use std::collections::BTreeMap;

use crate::metric_catalog::{int, MetricDef, MetricKind, MetricsBuilder, OVERFLOW_VALUE};
use crate::pipeline::data::kv_str;

/// Most distinct (`oom.pattern`, `oom.runtime`) series a receiver keeps. The
/// library is a fixed set (built-in and configured patterns), so this only
/// guards against a surprise; later series count under `oom.pattern: _other`.
pub const MAX_MATCH_SERIES: usize = 1000;

pub const OOM_LOG_MATCHES: MetricDef = MetricDef::new(
    "oom.log.matches",
    "{match}",
    MetricKind::Counter,
    "Log records the OOM pattern library matched",
)
.with_attributes(&["oom.pattern", "oom.runtime"])
.with_cardinality_cap(MAX_MATCH_SERIES);

/// Cumulative match counts since the receiver started.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct MatchCounts {
    /// (`oom.pattern`, `oom.runtime`) -> matches.
    series: BTreeMap<(String, String), u64>,
}

impl MatchCounts {
    pub fn count(&mut self, pattern: &str, runtime: &str) {
        let key = (pattern.to_owned(), runtime.to_owned());
        if let Some(n) = self.series.get_mut(&key) {
            *n += 1;
            return;
        }
        // Runtimes are a fixed set: the overflow series keeps them.
        let key = if self.series.len() < MAX_MATCH_SERIES {
            key
        } else {
            (OVERFLOW_VALUE.to_owned(), key.1)
        };
        *self.series.entry(key).or_insert(0) += 1;
    }

    pub fn is_empty(&self) -> bool {
        self.series.is_empty()
    }

    /// Matches of one series so far, if any.
    pub fn get(&self, pattern: &str, runtime: &str) -> Option<u64> {
        self.series
            .get(&(pattern.to_owned(), runtime.to_owned()))
            .copied()
    }

    /// One `oom.log.matches` point per series (none before the first match).
    pub fn record(&self, b: &mut MetricsBuilder, start_unix_nano: u64) {
        for ((pattern, runtime), n) in &self.series {
            b.int(
                &OOM_LOG_MATCHES,
                start_unix_nano,
                int(*n),
                vec![
                    kv_str("oom.pattern", pattern),
                    kv_str("oom.runtime", runtime),
                ],
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metric_catalog::checks::assert_emitted_per_catalog;
    use crate::pipeline::data::scoped_metrics;

    #[test]
    fn series_past_the_cap_count_under_the_overflow_pattern() {
        let mut counts = MatchCounts::default();
        for i in 0..MAX_MATCH_SERIES {
            counts.count(&format!("p{i}"), "go");
        }
        counts.count("p0", "go");
        counts.count("late.one", "java");
        counts.count("late.two", "java");
        counts.count("late.three", "go");
        assert_eq!(counts.get("p0", "go"), Some(2));
        assert_eq!(counts.get("late.one", "java"), None);
        assert_eq!(counts.get(OVERFLOW_VALUE, "java"), Some(2));
        assert_eq!(counts.get(OVERFLOW_VALUE, "go"), Some(1));
        // Only new series overflow: a known one keeps counting.
        counts.count("p999", "go");
        assert_eq!(counts.get("p999", "go"), Some(2));

        let mut b = MetricsBuilder::new(2);
        counts.record(&mut b, 1);
        let emitted = [scoped_metrics("test", None, b.into_metrics())];
        assert_emitted_per_catalog(&emitted, &[OOM_LOG_MATCHES]);
        assert_eq!(
            crate::pipeline::data::data_point_count(&emitted),
            MAX_MATCH_SERIES + 2
        );
    }

    #[test]
    fn nothing_is_recorded_before_the_first_match() {
        let mut b = MetricsBuilder::new(2);
        MatchCounts::default().record(&mut b, 1);
        assert!(b.is_empty());
    }
}
