//! `sending_queue`: its settings and their checks, shared by the in-memory
//! and the persistent queue.

use serde::Deserialize;

use crate::component::Reference;
use crate::config::{ComponentId, ValidationError};

/// Largest in-memory `queue_size`: the channel allocates its slots up front.
pub const MAX_MEMORY_QUEUE_SIZE: usize = 100_000;

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
    /// The unit of `queue_size`: only `requests` (see [`Sizer`]).
    pub sizer: Sizer,
}

/// `sending_queue.sizer`. The collector also counts `items` (log records,
/// data points) or `bytes`; here the queue holds whole requests, and
/// counting another unit would need a different queue, so those are
/// refused rather than read as a number of requests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub enum Sizer {
    #[default]
    Requests,
}

impl TryFrom<String> for Sizer {
    type Error = String;

    fn try_from(s: String) -> Result<Self, String> {
        match s.as_str() {
            "requests" => Ok(Sizer::Requests),
            "items" | "bytes" => Err(format!(
                "sizer {s:?} is not supported: this agent's queue counts whole requests; \
                 use sizer: requests and give queue_size as a number of requests \
                 (the batch processor's send_batch_max_size bounds the items of each)"
            )),
            _ => Err(format!("unknown sizer {s:?} (valid value: requests)")),
        }
    }
}

impl Default for QueueConfig {
    fn default() -> Self {
        QueueConfig {
            enabled: true,
            num_consumers: 10,
            queue_size: 1000,
            block_on_overflow: true,
            storage: None,
            sizer: Sizer::Requests,
        }
    }
}

impl QueueConfig {
    /// Errors name keys inside `sending_queue`.
    pub fn validate(&self) -> Result<(), ValidationError> {
        if self.enabled && self.queue_size == 0 {
            return Err(ValidationError::at("queue_size", "must be positive"));
        }
        if self.enabled && self.num_consumers == 0 {
            return Err(ValidationError::at("num_consumers", "must be positive"));
        }
        if self.enabled && self.storage.is_none() && self.queue_size > MAX_MEMORY_QUEUE_SIZE {
            return Err(ValidationError::at(
                "queue_size",
                format!(
                    "must be at most {MAX_MEMORY_QUEUE_SIZE} for an in-memory queue \
                     (its slots are allocated up front); set sending_queue::storage for a larger, persistent queue"
                ),
            ));
        }
        Ok(())
    }

    /// The `file_storage` extension a persistent queue names, as a reference
    /// of the exporter's config (key `sending_queue::storage`).
    pub fn references(&self) -> Vec<Reference> {
        self.storage
            .iter()
            .map(|id| {
                Reference::file_storage(
                    "sending_queue::storage",
                    id,
                    "a persistent sending queue needs a file_storage extension",
                )
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exporters::helper::tests::{memory_queue, persistent_queue};

    #[test]
    fn queue_settings_are_checked() {
        assert!(QueueConfig::default().validate().is_ok());
        let huge = memory_queue(1, MAX_MEMORY_QUEUE_SIZE + 1);
        assert!(huge.validate().is_err());
        assert!(persistent_queue(1, MAX_MEMORY_QUEUE_SIZE + 1)
            .validate()
            .is_ok());
        assert!(memory_queue(0, 1).validate().is_err());
        let disabled = QueueConfig {
            enabled: false,
            ..memory_queue(0, 0)
        };
        assert!(disabled.validate().is_ok());
    }

    #[test]
    fn sizer_requests_only() {
        let q: QueueConfig =
            serde_json::from_value(serde_json::json!({"sizer": "requests", "queue_size": 5}))
                .expect("requests");
        assert_eq!((q.sizer, q.queue_size), (Sizer::Requests, 5));
        for other in ["items", "bytes"] {
            let err = serde_json::from_value::<QueueConfig>(serde_json::json!({"sizer": other}))
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(err.contains("use sizer: requests"), "{err}");
        }
    }
}
