//! placeholder
use tokio::task::JoinHandle;
use crate::component::BuildContext;
use crate::pipeline::DynConsumer;
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FileExporterConfig { pub sending_queue: super::helper::QueueConfig }
impl FileExporterConfig { pub fn validate(&self) -> Result<(), String> { Ok(()) } }
pub async fn build(_c: &FileExporterConfig, _ctx: &BuildContext) -> anyhow::Result<(DynConsumer, JoinHandle<()>)> { anyhow::bail!("placeholder") }
