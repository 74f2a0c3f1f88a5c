//! The exporter helper: what every exporter shares, like the collector's
//! exporterhelper: a bounded sending queue (in memory, or persistent through a
//! `file_storage` extension), retry with exponential backoff and jitter,
//! a per-request timeout, the agent's own exporter metrics, and settling of
//! acknowledgements.
//!
//! An exporter implements [`ExportClient`] (one attempt at sending one
//! request) and calls [`spawn`].

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::Deserialize;
use tokio::task::JoinHandle;

use crate::component::BuildContext;
use crate::config::{ComponentId, GoDuration};
use crate::pipeline::{DynConsumer, Payload};

/// A successful answer; `rejected` > 0 is an OTLP partial success (logged,
/// counted, never retried).
#[derive(Debug, Default, Clone, PartialEq)]
pub struct ExportResponse {
    pub rejected: u64,
    pub message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportErrorKind {
    /// Worth retrying (OTLP retryable codes, connection errors, timeouts).
    Retryable,
    /// Never retried; the data is dropped and counted as failed.
    Permanent,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{message}")]
pub struct ExportError {
    pub kind: ExportErrorKind,
    /// The server's throttling hint (gRPC RetryInfo, HTTP Retry-After).
    pub retry_after: Option<Duration>,
    pub message: String,
}

impl ExportError {
    pub fn retryable(message: impl Into<String>) -> Self {
        ExportError {
            kind: ExportErrorKind::Retryable,
            retry_after: None,
            message: message.into(),
        }
    }

    pub fn permanent(message: impl Into<String>) -> Self {
        ExportError {
            kind: ExportErrorKind::Permanent,
            retry_after: None,
            message: message.into(),
        }
    }
}

/// One attempt at delivering one request.
#[async_trait]
pub trait ExportClient: Send + Sync + 'static {
    async fn export(&self, payload: &Payload) -> Result<ExportResponse, ExportError>;

    /// Called once after the queue has drained (flush files, close connections).
    async fn shutdown(&self) {}
}

/// `retry_on_failure`, with the collector's defaults.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetryConfig {
    pub enabled: bool,
    pub initial_interval: GoDuration,
    pub max_interval: GoDuration,
    /// 0 retries forever.
    pub max_elapsed_time: GoDuration,
    pub multiplier: f64,
    pub randomization_factor: f64,
}

impl Default for RetryConfig {
    fn default() -> Self {
        RetryConfig {
            enabled: true,
            initial_interval: GoDuration::from_secs(5),
            max_interval: GoDuration::from_secs(30),
            max_elapsed_time: GoDuration::from_secs(300),
            multiplier: 1.5,
            randomization_factor: 0.5,
        }
    }
}

impl RetryConfig {
    pub fn disabled() -> Self {
        RetryConfig {
            enabled: false,
            ..RetryConfig::default()
        }
    }

    pub fn validate(&self) -> Result<(), String> {
        if self.multiplier < 1.0 || !self.multiplier.is_finite() {
            return Err("retry_on_failure::multiplier must be at least 1".into());
        }
        if !(0.0..=1.0).contains(&self.randomization_factor) {
            return Err("retry_on_failure::randomization_factor must be between 0 and 1".into());
        }
        if self.enabled && self.initial_interval.is_zero() {
            return Err("retry_on_failure::initial_interval must be greater than zero".into());
        }
        Ok(())
    }
}

/// `sending_queue`, with the collector's defaults (sizer: requests).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QueueConfig {
    pub enabled: bool,
    pub num_consumers: usize,
    pub queue_size: usize,
    /// When full: wait (push back to the pipeline) instead of refusing.
    /// Our default is to wait, so that a slow exporter slows its receivers
    /// rather than dropping data.
    pub block_on_overflow: bool,
    /// `file_storage[/name]`: a persistent queue that survives kill -9.
    pub storage: Option<ComponentId>,
}

impl Default for QueueConfig {
    fn default() -> Self {
        QueueConfig {
            enabled: true,
            num_consumers: 10,
            queue_size: 1000,
            block_on_overflow: true,
            storage: None,
        }
    }
}

impl QueueConfig {
    pub fn validate(&self) -> Result<(), String> {
        if self.enabled && self.queue_size == 0 {
            return Err("sending_queue::queue_size must be positive".into());
        }
        if self.enabled && self.num_consumers == 0 {
            return Err("sending_queue::num_consumers must be positive".into());
        }
        Ok(())
    }
}

/// What [`spawn`] needs besides the client.
#[derive(Debug, Clone)]
pub struct ExporterSettings {
    /// Per attempt; `None` for none.
    pub timeout: Option<Duration>,
    pub retry: RetryConfig,
    pub queue: QueueConfig,
}

/// Starts the exporter: returns the consumer that enqueues into its sending
/// queue, and the task that drains the queue through `client`.
pub async fn spawn(
    ctx: &BuildContext,
    settings: ExporterSettings,
    client: Arc<dyn ExportClient>,
) -> anyhow::Result<(DynConsumer, JoinHandle<()>)> {
    let _ = (ctx, settings, client);
    anyhow::bail!("exporter helper: placeholder, replaced by the real implementation")
}
