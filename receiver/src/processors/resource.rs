//! placeholder
use tokio::task::JoinHandle;
use crate::component::BuildContext;
use crate::pipeline::{DynConsumer, Signal};
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ResourceConfig {}
impl ResourceConfig { pub fn validate(&self) -> Result<(), String> { Ok(()) } }
pub fn build(_c: &ResourceConfig, _ctx: &BuildContext, _s: Signal, next: DynConsumer) -> anyhow::Result<(DynConsumer, Option<JoinHandle<()>>)> { Ok((next, None)) }
