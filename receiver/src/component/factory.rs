//! The traits every component implements: one factory trait per kind (type
//! names, stability, decoding from the position-keeping config node) and one
//! config trait per kind (validate, references, start).

use std::any::Any;
use std::fmt;
use std::future::Future;
use std::pin::Pin;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::{BuildContext, ReceiverOutputs};
use crate::config::{ComponentId, ConfigError, Node, ValidationError};
use crate::extensions::Extensions;
use crate::pipeline::{DynConsumer, Signal};

/// What starting a component returns: boxed, as trait methods cannot be `async`
/// and stay object-safe.
pub type StartFuture<'a, T> = Pin<Box<dyn Future<Output = anyhow::Result<T>> + Send + 'a>>;

/// The four kinds of component, each with its section of the config.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    Receiver,
    Processor,
    Exporter,
    Extension,
}

impl Kind {
    pub const ALL: [Kind; 4] = [
        Kind::Receiver,
        Kind::Processor,
        Kind::Exporter,
        Kind::Extension,
    ];

    /// The top-level config section: `receivers`.
    pub fn section(self) -> &'static str {
        match self {
            Kind::Receiver => "receivers",
            Kind::Processor => "processors",
            Kind::Exporter => "exporters",
            Kind::Extension => "extensions",
        }
    }

    /// The word in messages: `receiver`.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Receiver => "receiver",
            Kind::Processor => "processor",
            Kind::Exporter => "exporter",
            Kind::Extension => "extension",
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The collector's stability levels, spelt as `components` prints them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stability {
    Development,
    Alpha,
    Beta,
    Stable,
    Deprecated,
}

impl fmt::Display for Stability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Stability::Development => "Development",
            Stability::Alpha => "Alpha",
            Stability::Beta => "Beta",
            Stability::Stable => "Stable",
            Stability::Deprecated => "Deprecated",
        })
    }
}

/// One component naming another in its config (`sending_queue::storage:
/// file_storage/queue`). The loader checks every reference in one pass.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reference {
    /// `::`-separated key inside the referring component's config, so an error
    /// points at the line that names the other component.
    pub key: String,
    pub id: ComponentId,
    pub kind: Kind,
    /// The types the target may have (their first spellings); empty for any.
    pub type_names: &'static [&'static str],
    /// Why the target is needed, for the error message.
    pub purpose: &'static str,
}

impl Reference {
    /// A `file_storage` extension named at `key`.
    pub fn file_storage(key: impl Into<String>, id: &ComponentId, purpose: &'static str) -> Self {
        Reference {
            key: key.into(),
            id: id.clone(),
            kind: Kind::Extension,
            type_names: &["file_storage"],
            purpose,
        }
    }
}

/// What every factory tells about its type, whatever its kind.
pub trait Factory: Send + Sync + 'static {
    /// Every accepted spelling of the type, the current one first (the
    /// collector renamed some: `otlp_http` was `otlphttp`). Never empty.
    fn type_names(&self) -> &'static [&'static str];
    fn stability(&self) -> Stability;
    /// One line for `oomscope components`.
    fn description(&self) -> &'static str;
    /// The signals a receiver produces or a processor or exporter takes.
    fn signals(&self) -> &'static [Signal] {
        &[Signal::Logs, Signal::Metrics]
    }
    /// The current spelling of the type.
    fn type_name(&self) -> &'static str {
        self.type_names().first().copied().unwrap_or_default()
    }
}

/// A decoded, typed component config. `Any` lets tests and tools look at the
/// concrete config behind the trait object.
pub trait ComponentConfig: Any + fmt::Debug + Send + Sync {
    /// Checks beyond what decoding checks (the collector's `Validate`). The
    /// error names the offending key, relative to the component.
    fn validate(&self) -> Result<(), ValidationError> {
        Ok(())
    }

    /// The other components this config names.
    fn references(&self) -> Vec<Reference> {
        Vec::new()
    }
}

pub trait ReceiverFactory: Factory {
    fn decode(&self, node: &Node) -> Result<Box<dyn ReceiverConfig>, ConfigError>;
}

pub trait ReceiverConfig: ComponentConfig {
    /// Binds what must be bound (a port already taken fails here, at start)
    /// and spawns the receiver. The returned task ends after `ctx.shutdown` is
    /// cancelled and the receiver has handed on or refused everything it took,
    /// dropping its outputs.
    fn start(&self, ctx: BuildContext, outputs: ReceiverOutputs)
        -> StartFuture<'_, JoinHandle<()>>;

    /// [`ReceiverConfig::start`], told the types of every receiver the
    /// agent runs (this one included), so that a receiver can leave to
    /// another what that one reports (`journald` leaves the kernel's
    /// entries to `kmsg` and `oom`). The service starts receivers this way.
    fn start_in_agent(
        &self,
        ctx: BuildContext,
        outputs: ReceiverOutputs,
        receiver_types: &[String],
    ) -> StartFuture<'_, JoinHandle<()>> {
        let _ = receiver_types;
        self.start(ctx, outputs)
    }
}

pub trait ProcessorFactory: Factory {
    fn decode(&self, node: &Node) -> Result<Box<dyn ProcessorConfig>, ConfigError>;
}

pub trait ProcessorConfig: ComponentConfig {
    /// Builds one instance for one pipeline (processors are per pipeline, as
    /// in the collector). Returns the consumer to feed and, for processors
    /// with a task of their own (batch), that task: it ends after the
    /// returned consumer is dropped and what it held has been flushed to
    /// `next`.
    fn build(
        &self,
        ctx: &BuildContext,
        signal: Signal,
        next: DynConsumer,
    ) -> anyhow::Result<(DynConsumer, Option<JoinHandle<()>>)>;
}

pub trait ExporterFactory: Factory {
    fn decode(&self, node: &Node) -> Result<Box<dyn ExporterConfig>, ConfigError>;
}

pub trait ExporterConfig: ComponentConfig {
    /// Builds the one instance shared by every pipeline that names this
    /// exporter (both signals go through it). The task ends after the
    /// consumer is dropped and the queue is drained (or, for a persistent
    /// queue, left on disk), or when the shutdown deadline passes.
    fn build<'a>(&'a self, ctx: &'a BuildContext)
        -> StartFuture<'a, (DynConsumer, JoinHandle<()>)>;
}

pub trait ExtensionFactory: Factory {
    fn decode(&self, node: &Node) -> Result<Box<dyn ExtensionConfig>, ConfigError>;
}

pub trait ExtensionConfig: ComponentConfig {
    /// Starts the extension and registers what it offers in `host` (a
    /// storage, the health state) before any pipeline starts. A returned task
    /// ends after `shutdown` is cancelled.
    fn start<'a>(
        &'a self,
        id: &'a ComponentId,
        host: &'a mut Extensions,
        shutdown: CancellationToken,
    ) -> StartFuture<'a, Option<JoinHandle<()>>>;
}
