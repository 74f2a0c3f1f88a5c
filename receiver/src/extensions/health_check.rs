//! placeholder
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HealthCheckConfig {}
impl HealthCheckConfig { pub fn validate(&self) -> Result<(), String> { Ok(()) } }
#[derive(Default, Clone)]
pub struct HealthState(std::sync::Arc<std::sync::atomic::AtomicBool>);
impl HealthState { pub fn set_ready(&self, r: bool) { self.0.store(r, std::sync::atomic::Ordering::Relaxed) } }
pub async fn start(_c: &HealthCheckConfig, _s: HealthState, _t: tokio_util::sync::CancellationToken) -> anyhow::Result<tokio::task::JoinHandle<()>> { anyhow::bail!("placeholder") }
