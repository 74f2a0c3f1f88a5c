//! `sending_queue`: its settings and their checks, shared by the in-memory
//! and the persistent queue.

use serde::Deserialize;

use crate::component::Reference;
use crate::config::{ComponentId, ValidationError};

/// Largest in-memory `queue_size` with `sizer: requests`: each queued request
/// may hold a whole batch, so a larger count bounds memory too loosely.
pub const MAX_MEMORY_QUEUE_SIZE: usize = 100_000;

/// Largest `queue_size` in any unit: the queue's room is a semaphore of
/// this many permits at most.
pub const MAX_QUEUE_SIZE: usize = tokio::sync::Semaphore::MAX_PERMITS;

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
    /// The unit of `queue_size` (see [`Sizer`]).
    pub sizer: Sizer,
}

/// `sending_queue.sizer`: the unit of `queue_size`, as the collector's
/// exporterhelper defines it (`request/sizer.go`): `requests` counts each
/// request as 1, `items` its log records or metric data points, `bytes` the
/// size of its serialized OTLP `Export*ServiceRequest` protobuf.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub enum Sizer {
    #[default]
    Requests,
    Items,
    Bytes,
}

impl Sizer {
    pub fn as_str(self) -> &'static str {
        match self {
            Sizer::Requests => "requests",
            Sizer::Items => "items",
            Sizer::Bytes => "bytes",
        }
    }
}

impl TryFrom<String> for Sizer {
    type Error = String;

    fn try_from(s: String) -> Result<Self, String> {
        match s.as_str() {
            "requests" => Ok(Sizer::Requests),
            "items" => Ok(Sizer::Items),
            "bytes" => Ok(Sizer::Bytes),
            _ => Err(format!(
                "invalid sizer {s:?} (valid values: requests, items, bytes)"
            )),
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
        if self.enabled && self.queue_size > MAX_QUEUE_SIZE {
            return Err(ValidationError::at(
                "queue_size",
                format!("must be at most {MAX_QUEUE_SIZE}"),
            ));
        }
        if self.enabled
            && self.sizer == Sizer::Requests
            && self.storage.is_none()
            && self.queue_size > MAX_MEMORY_QUEUE_SIZE
        {
            return Err(ValidationError::at(
                "queue_size",
                format!(
                    "must be at most {MAX_MEMORY_QUEUE_SIZE} requests for an in-memory queue \
                     (each may hold a whole batch); set sending_queue::storage for a larger, persistent queue, \
                     or bound it in items or bytes (sizer: items or bytes)"
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
    fn sizers_as_the_collector_names_them() {
        for (name, sizer) in [
            ("requests", Sizer::Requests),
            ("items", Sizer::Items),
            ("bytes", Sizer::Bytes),
        ] {
            let q: QueueConfig =
                serde_json::from_value(serde_json::json!({"sizer": name, "queue_size": 5}))
                    .unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!((q.sizer, q.queue_size), (sizer, 5));
            assert_eq!(sizer.as_str(), name);
        }
        let err = serde_json::from_value::<QueueConfig>(serde_json::json!({"sizer": "batches"}))
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            err.contains("valid values: requests, items, bytes"),
            "{err}"
        );
        // The in-memory request bound does not apply to items and bytes.
        let items = QueueConfig {
            sizer: Sizer::Items,
            ..memory_queue(1, MAX_MEMORY_QUEUE_SIZE + 1)
        };
        assert!(items.validate().is_ok());
    }
}
