//! placeholder
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HealthCheckConfig {}
impl HealthCheckConfig { pub fn validate(&self) -> Result<(), String> { Ok(()) } }
#[derive(Default, Clone)]
pub struct HealthState(std::sync::Arc<std::sync::atomic::AtomicBool>);
