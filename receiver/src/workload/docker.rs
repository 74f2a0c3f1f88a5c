//! docker's own record of a container: `<data-root>/containers/<id>/config.v2.json`
//! (moby's `container.Container`, saved by `container.toDisk`:
//! <https://github.com/moby/moby/blob/master/daemon/container/container.go>):
//! `Name` (`/name`), `Config.Image` (the reference the user gave) and
//! `Config.Labels` (cri-dockerd's `io.kubernetes.*` labels on Kubernetes).

use std::collections::HashMap;
use std::path::Path;

use serde::Deserialize;

use super::read_json;

/// Most bytes of a config.v2.json read.
const MAX_CONFIG_V2: usize = 4 << 20;

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct ConfigV2 {
    #[serde(rename = "Name")]
    pub name: String,
    #[serde(rename = "Config")]
    pub config: ContainerConfig,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct ContainerConfig {
    #[serde(rename = "Image")]
    pub image: String,
    #[serde(rename = "Labels")]
    pub labels: Option<HashMap<String, String>>,
}

/// Reads `<data_root>/containers/<id>/config.v2.json` (`data_root` already
/// under the host root).
pub fn read_config_v2(data_root: &Path, id: &str) -> Option<ConfigV2> {
    read_json(
        &data_root.join("containers").join(id).join("config.v2.json"),
        MAX_CONFIG_V2,
    )
}

/// Whether cri-dockerd's label says this is a pod's sandbox.
pub fn is_sandbox(cfg: &ConfigV2) -> bool {
    cfg.config
        .labels
        .as_ref()
        .and_then(|l| l.get("io.kubernetes.docker.type"))
        .is_some_and(|t| t == "podsandbox")
}
