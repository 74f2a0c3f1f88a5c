//! Receivers: where data enters. One module per receiver type; each registers
//! its factory in `crate::components` and defines the metrics it emits in
//! its `metrics` catalog (see `crate::metric_catalog`).

pub mod cgroup_filter;
pub mod filelog;
pub mod journald;
pub mod kmsg;
pub mod memory;
pub mod oom;
pub mod otlp;

#[cfg(test)]
mod metric_docs_tests;

pub use crate::component::ReceiverOutputs;
