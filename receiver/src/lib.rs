//! oomscope: a per-host agent that catches out-of-memory trouble on Linux and
//! ships it as OpenTelemetry data, configured like the OpenTelemetry Collector.

pub mod api;
pub mod cli;
pub mod clock;
pub mod code_pages;
pub mod component;
pub mod components;
pub mod config;
pub mod ebpf;
pub mod exporters;
pub mod extensions;
pub mod heap_stats;
pub mod incidents;
pub mod kernel_log;
pub mod metric_catalog;
pub mod patterns;
pub mod pipeline;
pub mod privileges;
pub mod process_table;
pub mod processors;
pub mod receivers;
pub mod redact;
pub mod secure_fs;
pub mod self_protection;
pub(crate) mod server;
pub mod service;
pub mod sysconf;
pub mod telemetry;
#[cfg(test)]
pub(crate) mod test_support;
pub mod tls;
pub mod urgent_lane;
pub mod workload;
