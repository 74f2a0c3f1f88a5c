//! Every metric the `filelog` receiver emits: its catalog, which the
//! `filelog` section of docs/configuration.md mirrors (checked by
//! `receivers::metric_docs_tests`).

use crate::metric_catalog::MetricDef;
pub use crate::patterns::match_counts::OOM_LOG_MATCHES;

/// The whole catalog, in docs order.
pub const ALL: &[MetricDef] = &[OOM_LOG_MATCHES];
