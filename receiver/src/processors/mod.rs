//! Processors: per-pipeline steps between receivers and exporters.

pub mod batch;
pub mod memory_limiter;
pub mod resource;

use tokio::task::JoinHandle;

use crate::component::BuildContext;
use crate::config::{from_node, ConfigError, Node};
use crate::pipeline::{DynConsumer, Signal};

#[derive(Debug, Clone)]
pub enum ProcessorConfig {
    Batch(batch::BatchConfig),
    Resource(resource::ResourceConfig),
    MemoryLimiter(memory_limiter::MemoryLimiterConfig),
}

impl ProcessorConfig {
    pub const TYPES: &'static [&'static str] = &["batch", "memory_limiter", "resource"];

    pub fn from_node(type_name: &str, node: &Node) -> Option<Result<Self, ConfigError>> {
        Some(match type_name {
            "batch" => from_node(node).map(ProcessorConfig::Batch),
            "resource" => from_node(node).map(ProcessorConfig::Resource),
            "memory_limiter" => from_node(node).map(ProcessorConfig::MemoryLimiter),
            _ => return None,
        })
    }

    pub fn validate(&self) -> Result<(), String> {
        match self {
            ProcessorConfig::Batch(c) => c.validate(),
            ProcessorConfig::Resource(c) => c.validate(),
            ProcessorConfig::MemoryLimiter(c) => c.validate(),
        }
    }

    /// Builds one instance for one pipeline (processors are per pipeline, as in
    /// the collector). Returns the consumer to feed and, for processors with a
    /// task of their own (batch), that task: it ends after the returned
    /// consumer is dropped and what it held has been flushed to `next`.
    pub fn build(
        &self,
        ctx: &BuildContext,
        signal: Signal,
        next: DynConsumer,
    ) -> anyhow::Result<(DynConsumer, Option<JoinHandle<()>>)> {
        match self {
            ProcessorConfig::Batch(c) => batch::build(c, ctx, signal, next),
            ProcessorConfig::Resource(c) => resource::build(c, ctx, signal, next),
            ProcessorConfig::MemoryLimiter(c) => memory_limiter::build(c, ctx, signal, next),
        }
    }
}
