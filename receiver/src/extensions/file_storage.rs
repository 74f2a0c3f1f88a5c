//! placeholder
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FileStorageConfig {}
impl FileStorageConfig { pub fn validate(&self) -> Result<(), String> { Ok(()) } }
pub struct FileStorage;
