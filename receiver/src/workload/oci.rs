//! A bundle's `config.json` (the OCI runtime spec,
//! <https://github.com/opencontainers/runtime-spec/blob/main/config.md>):
//! its `annotations` and `mounts` are what the runtimes write identity into.
//!
//! - containerd's CRI plugin: `io.kubernetes.cri.*`, defined in
//!   <https://github.com/containerd/containerd/blob/main/internal/cri/annotations/annotations.go>
//!   (`pkg/cri/annotations` before containerd 2.0).
//! - CRI-O: `io.kubernetes.cri-o.*` (its `pkg/annotations` /
//!   `internal/annotations`, <https://github.com/cri-o/cri-o>), plus the
//!   kubelet's labels `io.kubernetes.pod.*` and `io.kubernetes.container.name`
//!   (<https://github.com/kubernetes/kubernetes/blob/master/pkg/kubelet/types/labels.go>)
//!   copied into the annotations; `io.container.manager` is `cri-o`.
//! - podman: `io.container.manager: libpod` and no name or image (those are
//!   in containers/storage, see [`super::storage`]).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::image::split_image;
use super::{read_json, Workload};

/// Most bytes of a config.json read (they are tens of KiB).
const MAX_CONFIG: usize = 4 << 20;

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct Spec {
    pub annotations: HashMap<String, String>,
    pub mounts: Vec<Mount>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct Mount {
    pub destination: String,
    pub source: String,
}

/// Parses the text of a config.json (`None` when it does not parse).
pub fn parse_spec(bytes: &[u8]) -> Option<Spec> {
    serde_json::from_slice(bytes).ok()
}

/// Reads `<bundle>/config.json` (a host path, under `root`).
pub fn read_spec(root: &Path, bundle: &Path) -> Option<Spec> {
    read_json(
        &super::host_path(root, &bundle.join("config.json")),
        MAX_CONFIG,
    )
}

/// Whether the spec is a pod's sandbox (pause) container rather than a
/// workload container.
pub fn is_sandbox(spec: &Spec) -> bool {
    let a = &spec.annotations;
    a.get("io.kubernetes.cri.container-type")
        .map(String::as_str)
        == Some("sandbox")
        || a.get("io.kubernetes.cri-o.ContainerType")
            .map(String::as_str)
            == Some("sandbox")
}

fn get(a: &HashMap<String, String>, key: &str) -> Option<String> {
    a.get(key).filter(|v| !v.is_empty()).cloned()
}

fn set_image(w: &mut Workload, reference: Option<String>) {
    if let Some(reference) = reference {
        let (name, tags) = split_image(&reference);
        if !name.is_empty() {
            w.image_name = Some(name);
            w.image_tags = tags;
        }
    }
}

/// Identity from containerd CRI annotations (`io.kubernetes.cri.*`).
pub fn apply_containerd_cri(w: &mut Workload, spec: &Spec) {
    let a = &spec.annotations;
    if let Some(name) = get(a, "io.kubernetes.cri.container-name") {
        w.container_name = Some(name.clone());
        w.k8s_container_name = Some(name);
    }
    set_image(w, get(a, "io.kubernetes.cri.image-name"));
    w.pod_name = get(a, "io.kubernetes.cri.sandbox-name").or(w.pod_name.take());
    w.namespace = get(a, "io.kubernetes.cri.sandbox-namespace").or(w.namespace.take());
    w.pod_uid = get(a, "io.kubernetes.cri.sandbox-uid").or(w.pod_uid.take());
}

/// Identity from CRI-O's annotations (and the kubelet labels it copies).
pub fn apply_crio(w: &mut Workload, spec: &Spec) {
    let a = &spec.annotations;
    // CRI-O's container name is the kubelet's `k8s_<container>_<pod>_...`.
    w.container_name = get(a, "io.kubernetes.cri-o.ContainerName").or(w.container_name.take());
    set_image(
        w,
        get(a, "io.kubernetes.cri-o.ImageName").or_else(|| get(a, "io.kubernetes.cri-o.Image")),
    );
    apply_kubelet_labels(w, a);
}

/// The kubelet's labels (`io.kubernetes.pod.name`, ...), which CRI-O puts in
/// the annotations and cri-dockerd in docker's labels.
pub fn apply_kubelet_labels(w: &mut Workload, labels: &HashMap<String, String>) {
    w.pod_name = get(labels, "io.kubernetes.pod.name").or(w.pod_name.take());
    w.namespace = get(labels, "io.kubernetes.pod.namespace").or(w.namespace.take());
    w.pod_uid = get(labels, "io.kubernetes.pod.uid").or(w.pod_uid.take());
    w.k8s_container_name =
        get(labels, "io.kubernetes.container.name").or(w.k8s_container_name.take());
}

/// `io.container.manager` (`cri-o` or `libpod`).
pub fn manager(spec: &Spec) -> Option<&str> {
    spec.annotations
        .get("io.container.manager")
        .map(String::as_str)
}

/// docker's data root, from a mount whose source is
/// `<data-root>/containers/<id>/<file>` (hostname, hosts, resolv.conf).
pub fn docker_data_root(spec: &Spec, id: &str) -> Option<PathBuf> {
    let marker = format!("/containers/{id}/");
    spec.mounts.iter().find_map(|m| {
        let at = m.source.find(&marker)?;
        (at > 0).then(|| PathBuf::from(&m.source[..at]))
    })
}
