//! placeholder
use tokio::task::JoinHandle;
use crate::component::BuildContext;
use crate::pipeline::DynConsumer;
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OtlpHttpExporterConfig { pub sending_queue: super::helper::QueueConfig }
impl OtlpHttpExporterConfig { pub fn validate(&self) -> Result<(), String> { Ok(()) } }
pub async fn build(_c: &OtlpHttpExporterConfig, _ctx: &BuildContext) -> anyhow::Result<(DynConsumer, JoinHandle<()>)> { anyhow::bail!("placeholder") }
