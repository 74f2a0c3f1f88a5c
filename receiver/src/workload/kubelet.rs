//! The kubelet's log layout, the same whatever the runtime (CRI logging,
//! <https://github.com/kubernetes/design-proposals-archive/blob/main/node/kubelet-cri-logging.md>;
//! the paths are built by `BuildPodLogsDirectory` and `logSymlink` in
//! kubelet's `pkg/kubelet/kuberuntime`):
//! - `/var/log/pods/<namespace>_<pod name>_<pod uid>/<container name>/<restart>.log`
//! - `/var/log/containers/<pod name>_<namespace>_<container name>-<container id>.log`,
//!   a symlink to the former.
//!
//! Namespace, pod and container names are DNS labels or subdomains: none
//! holds `_`, so the separators are unambiguous.

use std::collections::HashMap;
use std::path::Path;

/// Most directory entries read per directory.
const MAX_ENTRIES: usize = 100_000;

/// A pod, from its log directory's name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodRef {
    pub namespace: String,
    pub name: String,
    pub uid: String,
}

/// A container, from its /var/log/containers link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerRef {
    pub pod_name: String,
    pub namespace: String,
    pub container_name: String,
    /// From the link's target (`/var/log/pods/<ns>_<pod>_<uid>/...`).
    pub pod_uid: Option<String>,
}

/// What the log directories say, by container id and by pod uid.
#[derive(Debug, Default)]
pub struct KubeletIndex {
    pub containers: HashMap<String, ContainerRef>,
    pub pods: HashMap<String, PodRef>,
}

/// `<namespace>_<pod>_<uid>`.
pub fn parse_pod_dir(name: &str) -> Option<PodRef> {
    let mut parts = name.splitn(3, '_');
    let (namespace, pod, uid) = (parts.next()?, parts.next()?, parts.next()?);
    if namespace.is_empty() || pod.is_empty() || uid.is_empty() {
        return None;
    }
    Some(PodRef {
        namespace: namespace.to_string(),
        name: pod.to_string(),
        uid: uid.to_string(),
    })
}

/// `<pod>_<namespace>_<container>-<id>.log` → (id, ref without uid).
pub fn parse_container_link(name: &str) -> Option<(String, ContainerRef)> {
    let stem = name.strip_suffix(".log")?;
    let mut parts = stem.splitn(3, '_');
    let (pod, namespace, rest) = (parts.next()?, parts.next()?, parts.next()?);
    let dash = rest.rfind('-')?;
    let (container, id) = (&rest[..dash], &rest[dash + 1..]);
    if pod.is_empty() || namespace.is_empty() || container.is_empty() || id.is_empty() {
        return None;
    }
    Some((
        id.to_string(),
        ContainerRef {
            pod_name: pod.to_string(),
            namespace: namespace.to_string(),
            container_name: container.to_string(),
            pod_uid: None,
        },
    ))
}

/// Reads both directories (paths already under the host root).
pub fn read_index(pod_logs: &Path, container_logs: &Path) -> KubeletIndex {
    let mut index = KubeletIndex::default();
    if let Ok(entries) = std::fs::read_dir(pod_logs) {
        for e in entries.filter_map(Result::ok).take(MAX_ENTRIES) {
            if let Some(pod) = e.file_name().to_str().and_then(parse_pod_dir) {
                index.pods.insert(pod.uid.clone(), pod);
            }
        }
    }
    if let Ok(entries) = std::fs::read_dir(container_logs) {
        for e in entries.filter_map(Result::ok).take(MAX_ENTRIES) {
            let Some((id, mut container)) = e.file_name().to_str().and_then(parse_container_link)
            else {
                continue;
            };
            // The target: .../pods/<ns>_<pod>_<uid>/<container>/<n>.log.
            container.pod_uid = std::fs::read_link(e.path()).ok().and_then(|target| {
                let pod_dir = target
                    .parent()?
                    .parent()?
                    .file_name()?
                    .to_str()?
                    .to_string();
                parse_pod_dir(&pod_dir)
                    .filter(|p| p.namespace == container.namespace && p.name == container.pod_name)
                    .map(|p| p.uid)
            });
            index.containers.insert(id, container);
        }
    }
    index
}
