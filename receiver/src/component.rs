//! What every component gets when it is built.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::config::ComponentId;
use crate::extensions::Extensions;
use crate::telemetry::Telemetry;

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
