//! Receivers: where data enters. One module per receiver type.

pub mod filelog;
pub mod kmsg;
pub mod memory;
pub mod oom;
pub mod otlp;

use tokio::task::JoinHandle;

use crate::component::BuildContext;
use crate::config::{from_node, ConfigError, Node, ValidationError};
use crate::pipeline::{DynConsumer, Signal};

/// A configured receiver, by type.
#[derive(Debug, Clone)]
pub enum ReceiverConfig {
    Filelog(filelog::FilelogReceiverConfig),
    Kmsg(kmsg::KmsgReceiverConfig),
    Memory(memory::MemoryReceiverConfig),
    Oom(oom::OomReceiverConfig),
    Otlp(otlp::OtlpReceiverConfig),
}

/// What a receiver feeds: the head of every pipeline it is named in, per signal
/// (a fan-out when it is in several pipelines of one signal).
pub struct ReceiverOutputs {
    pub logs: Option<DynConsumer>,
    pub metrics: Option<DynConsumer>,
}

impl ReceiverConfig {
    /// Type names accepted in `receivers:` (aliases included).
    pub const TYPES: &'static [&'static str] =
        &["file_log", "filelog", "kmsg", "memory", "oom", "otlp"];

    /// Decodes the config of a receiver of type `type_name`; `None` when the
    /// type is unknown.
    pub fn from_node(type_name: &str, node: &Node) -> Option<Result<Self, ConfigError>> {
        Some(match type_name {
            "filelog" | "file_log" => from_node(node).map(ReceiverConfig::Filelog),
            "kmsg" => from_node(node).map(ReceiverConfig::Kmsg),
            "memory" => from_node(node).map(ReceiverConfig::Memory),
            "oom" => from_node(node).map(ReceiverConfig::Oom),
            "otlp" => from_node(node).map(ReceiverConfig::Otlp),
            _ => return None,
        })
    }

    /// Checks beyond what decoding checks (the collector's `Validate`); the
    /// error may name the offending key.
    pub fn validate(&self) -> Result<(), ValidationError> {
        match self {
            ReceiverConfig::Filelog(c) => c.validate().map_err(ValidationError::from),
            ReceiverConfig::Kmsg(c) => c.validate().map_err(ValidationError::from),
            ReceiverConfig::Memory(c) => c.validate().map_err(ValidationError::from),
            ReceiverConfig::Oom(c) => c.validate().map_err(ValidationError::from),
            ReceiverConfig::Otlp(c) => c.validate(),
        }
    }

    /// Signals this receiver can produce.
    pub fn signals(&self) -> &'static [Signal] {
        match self {
            ReceiverConfig::Filelog(_)
            | ReceiverConfig::Kmsg(_)
            | ReceiverConfig::Oom(_)
            | ReceiverConfig::Otlp(_) => &[Signal::Logs, Signal::Metrics],
            ReceiverConfig::Memory(_) => &[Signal::Metrics],
        }
    }

    /// Binds what must be bound (a port already taken fails here, at start)
    /// and spawns the receiver. The returned task ends after `ctx.shutdown` is
    /// cancelled and the receiver has handed on or refused everything it took,
    /// dropping its outputs.
    pub async fn start(
        &self,
        ctx: BuildContext,
        outputs: ReceiverOutputs,
    ) -> anyhow::Result<JoinHandle<()>> {
        match self {
            ReceiverConfig::Filelog(c) => filelog::start(c, ctx, outputs).await,
            ReceiverConfig::Kmsg(c) => kmsg::start(c, ctx, outputs).await,
            ReceiverConfig::Memory(c) => memory::start(c, ctx, outputs).await,
            ReceiverConfig::Oom(c) => oom::start(c, ctx, outputs).await,
            ReceiverConfig::Otlp(c) => otlp::start(c, ctx, outputs).await,
        }
    }
}
