//! placeholder
use tokio::task::JoinHandle;
use crate::component::BuildContext;
use super::ReceiverOutputs;
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OtlpReceiverConfig {}
impl OtlpReceiverConfig { pub fn validate(&self) -> Result<(), String> { Ok(()) } }
pub async fn start(_c: &OtlpReceiverConfig, _ctx: BuildContext, _o: ReceiverOutputs) -> anyhow::Result<JoinHandle<()>> { anyhow::bail!("placeholder") }
