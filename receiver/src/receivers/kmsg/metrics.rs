//! Every metric the `kmsg` receiver emits: its catalog, which the `kmsg`
//! section of docs/configuration.md mirrors (checked by
//! `receivers::metric_docs_tests`).

use crate::metric_catalog::{MetricDef, MetricKind};
pub use crate::patterns::match_counts::OOM_LOG_MATCHES;

pub const KMSG_RECORDS_LOST: MetricDef = MetricDef::new(
    "oomscope.kmsg.records.lost",
    "{record}",
    MetricKind::Counter,
    "Kernel log records overwritten in the ring buffer before they were read",
);

/// The whole catalog, in docs order.
pub const ALL: &[MetricDef] = &[KMSG_RECORDS_LOST, OOM_LOG_MATCHES];
