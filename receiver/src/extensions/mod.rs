//! Extensions: services beside the pipelines.

pub mod file_storage;
pub mod health_check;

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::config::{from_node, ComponentId, ConfigError, Node};

#[derive(Debug, Clone)]
pub enum ExtensionConfig {
    HealthCheck(health_check::HealthCheckConfig),
    FileStorage(file_storage::FileStorageConfig),
}

impl ExtensionConfig {
    pub const TYPES: &'static [&'static str] = &["file_storage", "health_check"];

    pub fn from_node(type_name: &str, node: &Node) -> Option<Result<Self, ConfigError>> {
        Some(match type_name {
            "health_check" => from_node(node).map(ExtensionConfig::HealthCheck),
            "file_storage" => from_node(node).map(ExtensionConfig::FileStorage),
            _ => return None,
        })
    }

    pub fn validate(&self) -> Result<(), String> {
        match self {
            ExtensionConfig::HealthCheck(c) => c.validate(),
            ExtensionConfig::FileStorage(c) => c.validate(),
        }
    }
}

/// The started extensions, as components see them.
#[derive(Default)]
pub struct Extensions {
    pub storages: BTreeMap<ComponentId, Arc<file_storage::FileStorage>>,
    /// Set once every pipeline runs; cleared at shutdown (health_check reports it).
    pub health: health_check::HealthState,
}

impl Extensions {
    /// The `file_storage` extension named `id`; errors name the component that asked.
    pub fn storage(
        &self,
        id: &ComponentId,
        asked_by: &ComponentId,
    ) -> anyhow::Result<Arc<file_storage::FileStorage>> {
        self.storages.get(id).cloned().ok_or_else(|| {
            anyhow::anyhow!("{asked_by}: storage {id} is not a configured file_storage extension listed in service::extensions")
        })
    }
}
