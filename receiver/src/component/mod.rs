//! The component framework, as in the collector: a factory per component type
//! decodes its typed config; the config validates itself, names the other
//! components it references, and starts. The config loader decodes through a
//! [`Registry`] of factories and knows no component; the registry of every
//! component oomscope has is `crate::components`.

mod factory;
mod registry;

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::config::ComponentId;
use crate::extensions::Extensions;
use crate::pipeline::DynConsumer;
use crate::telemetry::Telemetry;

pub use factory::{
    ComponentConfig, ExporterConfig, ExporterFactory, ExtensionConfig, ExtensionFactory, Factory,
    Kind, ProcessorConfig, ProcessorFactory, ReceiverConfig, ReceiverFactory, Reference, Stability,
    StartFuture,
};
pub use registry::{Registry, Retired};

/// Shared by the builders of receivers, processors and exporters.
#[derive(Clone)]
pub struct BuildContext {
    pub id: ComponentId,
    /// The agent's own metrics.
    pub telemetry: Arc<Telemetry>,
    /// Started extensions (`file_storage` for persistent queues and checkpoints).
    pub extensions: Arc<Extensions>,
    /// Cancelled when the service shuts down. Receivers stop taking data;
    /// processors and exporters instead drain when their input closes.
    pub shutdown: CancellationToken,
}

/// What a receiver feeds: the head of every pipeline it is named in, per signal
/// (a fan-out when it is in several pipelines of one signal).
pub struct ReceiverOutputs {
    pub logs: Option<DynConsumer>,
    pub metrics: Option<DynConsumer>,
}
