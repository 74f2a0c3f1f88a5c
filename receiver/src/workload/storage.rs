//! containers/storage's container list (podman's names and images):
//! `<graphroot>/<driver>-containers/containers.json`, an array of
//! `{"id", "names", "image", "metadata", ...}` whose `metadata` is itself a
//! JSON string written by podman (`image-name`, `image-id`, `name`).
//! Format: the `Container` type of
//! <https://github.com/containers/storage/blob/main/containers.go>; the
//! metadata is podman's `RuntimeContainerMetadata`
//! (<https://github.com/containers/podman/blob/main/libpod/storage.go>).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::host_path;

/// Most bytes of a containers.json read (about 1 KiB per container).
const MAX_CONTAINERS_JSON: usize = 32 << 20;

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct StoredContainer {
    id: String,
    names: Vec<String>,
    metadata: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Metadata {
    #[serde(rename = "image-name")]
    image_name: String,
    name: String,
}

/// What containers/storage knows of one container.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoredIdentity {
    pub name: Option<String>,
    pub image: Option<String>,
}

/// The containers.json files of a storage root: one per driver directory
/// (`overlay-containers`, `vfs-containers`, ...).
pub fn containers_json_files(root: &Path, graphroot: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(host_path(root, graphroot)) else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().ends_with("-containers"))
        .map(|e| e.path().join("containers.json"))
        .filter(|p| p.is_file())
        .collect()
}

/// Every container in one containers.json (a path already under the host
/// root), by id.
pub fn read_containers_json(path: &Path) -> HashMap<String, StoredIdentity> {
    super::read_bounded(path, MAX_CONTAINERS_JSON)
        .map(|bytes| parse_containers_json(&bytes))
        .unwrap_or_default()
}

/// Every container in the text of a containers.json, by id (none when it
/// does not parse).
pub fn parse_containers_json(bytes: &[u8]) -> HashMap<String, StoredIdentity> {
    let list: Vec<StoredContainer> = serde_json::from_slice(bytes).unwrap_or_default();
    list.into_iter()
        .filter(|c| !c.id.is_empty())
        .map(|c| {
            let meta: Metadata = serde_json::from_str(&c.metadata).unwrap_or_default();
            let name = Some(meta.name)
                .filter(|n| !n.is_empty())
                .or_else(|| c.names.first().cloned());
            let image = Some(meta.image_name).filter(|n| !n.is_empty());
            (c.id, StoredIdentity { name, image })
        })
        .collect()
}
