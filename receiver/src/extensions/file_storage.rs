//! placeholder
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FileStorageConfig {}
impl FileStorageConfig { pub fn validate(&self) -> Result<(), String> { Ok(()) } }
pub struct FileStorage;
impl FileStorage { pub fn open(_c: &FileStorageConfig, _id: &crate::config::ComponentId) -> anyhow::Result<std::sync::Arc<FileStorage>> { anyhow::bail!("placeholder") } }
