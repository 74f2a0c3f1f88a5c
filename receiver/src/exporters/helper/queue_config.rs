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
}
