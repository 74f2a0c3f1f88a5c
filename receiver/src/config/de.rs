//! placeholder
use super::{ConfigError, Node};
pub fn from_node<T: serde::de::DeserializeOwned>(node: &Node) -> Result<T, ConfigError> {
    Err(ConfigError::new(Some(node.mark.clone()), "", "placeholder"))
}
