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
/// Most bytes of a storage.conf read.
const MAX_STORAGE_CONF: usize = 256 << 10;

/// containers/storage's compiled-in roots for root (graphroot, runroot).
const DEFAULT_ROOTS: [&str; 2] = ["/var/lib/containers/storage", "/run/containers/storage"];
/// Where storage.conf is looked for, the administrator's first (the first
/// that exists is the one containers/storage reads).
const STORAGE_CONF: [&str; 2] = [
    "/etc/containers/storage.conf",
    "/usr/share/containers/storage.conf",
];

/// The storage roots podman and CRI-O use on this host without a `--root`:
/// `graphroot` and `runroot` of its storage.conf (host paths), else the
/// compiled-in defaults. Known before any container runs, so a container
/// killed before a scan ever saw its conmon is still found on disk.
pub fn configured_roots(root: &Path) -> Vec<PathBuf> {
    let conf = STORAGE_CONF
        .iter()
        .find_map(|p| super::read_bounded(&host_path(root, Path::new(p)), MAX_STORAGE_CONF));
    let (graph, run) = conf
        .map(|c| parse_storage_conf(&String::from_utf8_lossy(&c)))
        .unwrap_or_default();
    let graph = graph.unwrap_or_else(|| PathBuf::from(DEFAULT_ROOTS[0]));
    let run = run.unwrap_or_else(|| PathBuf::from(DEFAULT_ROOTS[1]));
    if graph == run {
        vec![graph]
    } else {
        vec![graph, run]
    }
}

/// `graphroot` and `runroot` of the `[storage]` table of a storage.conf
/// (TOML). Only these two absolute, double- or single-quoted strings are
/// needed, so a line scan does instead of a TOML parser.
pub fn parse_storage_conf(text: &str) -> (Option<PathBuf>, Option<PathBuf>) {
    let (mut graph, mut run) = (None, None);
    let mut in_storage = false;
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            in_storage = line == "[storage]";
            continue;
        }
        if !in_storage {
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        let value = value.trim();
        let unquoted = value
            .strip_prefix('"')
            .and_then(|v| v.split_once('"'))
            .or_else(|| value.strip_prefix('\'').and_then(|v| v.split_once('\'')))
            .map(|(v, _)| v)
            .filter(|v| v.starts_with('/'));
        let slot = match key.trim() {
            "graphroot" => &mut graph,
            "runroot" => &mut run,
            _ => continue,
        };
        if let Some(v) = unquoted {
            *slot = Some(PathBuf::from(v));
        }
    }
    (graph, run)
}

/// The OCI bundles a container `id` may have under a storage root
/// (`<root>/<driver>-containers/<id>/userdata`, host paths) whose
/// config.json exists: podman's is under the graphroot, CRI-O's under the
/// runroot.
pub fn bundles(root: &Path, storage_root: &Path, id: &str) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(host_path(root, storage_root)) else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().ends_with("-containers"))
        .filter_map(|e| {
            let bundle = storage_root.join(e.file_name()).join(id).join("userdata");
            host_path(root, &bundle.join("config.json"))
                .is_file()
                .then_some(bundle)
        })
        .collect()
}

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
