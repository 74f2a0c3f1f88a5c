//! Extensions: services beside the pipelines. Each registers its factory in
//! `crate::components`.

pub mod auth;
pub mod file_storage;
pub mod health_check;
pub mod status;

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::config::ComponentId;

/// The started extensions, as components see them.
#[derive(Default)]
pub struct Extensions {
    pub storages: BTreeMap<ComponentId, Arc<file_storage::FileStorage>>,
    /// Set once every pipeline runs; cleared at shutdown (health_check reports it).
    pub health: health_check::HealthState,
    /// Started authenticators (`bearertokenauth`, `basicauth`, `headers_setter`).
    pub auth: auth::Authenticators,
    /// The agent's incidents and the memory history they draw on (fed by
    /// the `memory`, `oom`, `filelog` and `journald` receivers).
    pub incidents: Arc<crate::incidents::IncidentHub>,
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
