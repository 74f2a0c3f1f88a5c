//! Workload identity from the node itself: which container, image and pod a
//! cgroup belongs to, read from the container runtimes' own state, found
//! through their processes rather than at fixed storage paths. No API server
//! is asked.
//!
//! A container's id comes from its cgroup path
//! ([`crate::receivers::oom::enrich::container_ids`]); the rest from:
//! - podman and CRI-O: the container's `conmon` ([`procs`]), whose
//!   arguments name the container (`-c`, `-n`) and its OCI bundle (`-b`);
//!   the bundle's `config.json` annotations ([`oci`]: CRI-O writes the pod,
//!   container and image there), and for podman containers/storage's
//!   `containers.json` next to the bundle or under the `--root` podman
//!   passes in conmon's exit command ([`storage`]: name and image).
//! - containerd (Kubernetes through CRI): the `containerd-shim-*` process;
//!   its working directory is its bundle
//!   `<state>/io.containerd.runtime.v2.task/<namespace>/<id>`, whose
//!   siblings are every container's bundle in that namespace; CRI writes
//!   `io.kubernetes.cri.*` annotations into each `config.json` ([`oci`]).
//! - docker: containerd namespace `moby`; the bundle's mounts name docker's
//!   data root (`<data-root>/containers/<id>/hostname`), where
//!   `config.v2.json` has the name, image and labels ([`docker`]).
//! - the kubelet's log directories, whatever the runtime ([`kubelet`]).
//!
//! `container.runtime.name` is `podman`, `cri-o`, `containerd` or `docker`.
//! `k8s.node.name` (from config or `K8S_NODE_NAME`, the downward API) is
//! added only to Kubernetes workloads.
//!
//! Every file read is bounded; anything missing or malformed leaves the
//! attribute out. Resolved containers are cached by id (at most
//! `cache_size`), refreshed every `refresh_interval` by a scan of /proc for
//! runtime processes (so a container is known before it is OOM-killed: its
//! conmon exits right after it), and forgotten when no scan or lookup has
//! seen them for four intervals. A lookup that misses rescans /proc at most
//! once a second, then looks on disk: containerd task directories seen
//! before, and the containers/storage roots seen in conmon arguments or
//! configured on the host (storage.conf, else `/var/lib/containers/storage`
//! and `/run/containers/storage`), so a container killed before any scan
//! saw it, its conmon already gone, is still named.

pub mod docker;
pub mod image;
pub mod kubelet;
pub mod oci;
pub mod procs;
pub mod storage;

#[cfg(test)]
mod tests;

use std::collections::{BTreeSet, HashMap, HashSet};
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, ArrayValue, KeyValue};
use serde::Deserialize;

use crate::config::{GoDuration, ValidationError};
use crate::pipeline::data::{kv, kv_str};
use crate::receivers::oom::enrich::container_ids;
use procs::RuntimeProcess;

/// The environment variable `k8s.node.name` comes from when `node_name` is
/// not set (set it from the downward API's `spec.nodeName`).
pub const NODE_NAME_ENV: &str = "K8S_NODE_NAME";

/// `workload`: how container and pod identity is found.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WorkloadConfig {
    /// Look container names, images and pods up; when off, only the ids a
    /// cgroup path names (`container.id`, `k8s.pod.uid`) are given.
    pub enabled: bool,
    /// `k8s.node.name` of Kubernetes workloads; when unset, the value of
    /// `$K8S_NODE_NAME`.
    pub node_name: Option<String>,
    /// The kubelet's pod log directory (under the host root).
    pub pod_logs_path: PathBuf,
    /// The kubelet's container log links (under the host root).
    pub container_logs_path: PathBuf,
    /// How often running containers are looked up ahead of need.
    pub refresh_interval: GoDuration,
    /// Most containers remembered.
    pub cache_size: usize,
}

impl Default for WorkloadConfig {
    fn default() -> Self {
        WorkloadConfig {
            enabled: true,
            node_name: None,
            pod_logs_path: PathBuf::from("/var/log/pods"),
            container_logs_path: PathBuf::from("/var/log/containers"),
            refresh_interval: GoDuration::from_secs(10),
            cache_size: 4096,
        }
    }
}

/// Most containers the cache may be asked to hold.
const MAX_CACHE: usize = 1 << 20;

impl WorkloadConfig {
    /// Checks the block; keys are relative to it (use `.within("workload")`).
    pub fn validate(&self) -> Result<(), ValidationError> {
        if self.refresh_interval.get() < Duration::from_secs(1) {
            return Err(ValidationError::at(
                "refresh_interval",
                "must be at least 1s",
            ));
        }
        if self.cache_size == 0 || self.cache_size > MAX_CACHE {
            return Err(ValidationError::at(
                "cache_size",
                format!("must be between 1 and {MAX_CACHE}"),
            ));
        }
        for (key, p) in [
            ("pod_logs_path", &self.pod_logs_path),
            ("container_logs_path", &self.container_logs_path),
        ] {
            if !p.is_absolute() {
                return Err(ValidationError::at(key, "must be an absolute path"));
            }
        }
        if self.node_name.as_deref().is_some_and(str::is_empty) {
            return Err(ValidationError::at(
                "node_name",
                "must not be empty (leave it out to use $K8S_NODE_NAME)",
            ));
        }
        Ok(())
    }
}

/// Who a cgroup's processes are: the resource attributes of its data.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Workload {
    pub container_id: Option<String>,
    pub container_name: Option<String>,
    /// `container.runtime.name`.
    pub runtime: Option<&'static str>,
    pub image_name: Option<String>,
    pub image_tags: Vec<String>,
    pub pod_name: Option<String>,
    pub pod_uid: Option<String>,
    pub namespace: Option<String>,
    pub k8s_container_name: Option<String>,
    pub node_name: Option<String>,
}

impl Workload {
    fn is_kubernetes(&self) -> bool {
        self.pod_uid.is_some() || self.pod_name.is_some() || self.namespace.is_some()
    }

    /// The resource attributes (semantic conventions' `container.*` and
    /// `k8s.*`); `container.image.tags` is a string array.
    pub fn resource_attributes(&self) -> Vec<KeyValue> {
        let mut out = Vec::new();
        let mut push = |key: &str, v: &Option<String>| {
            if let Some(v) = v {
                out.push(kv_str(key, v));
            }
        };
        push("container.id", &self.container_id);
        push("container.name", &self.container_name);
        push("container.runtime.name", &self.runtime.map(str::to_string));
        push("container.image.name", &self.image_name);
        push("k8s.pod.name", &self.pod_name);
        push("k8s.pod.uid", &self.pod_uid);
        push("k8s.namespace.name", &self.namespace);
        push("k8s.container.name", &self.k8s_container_name);
        push("k8s.node.name", &self.node_name);
        if !self.image_tags.is_empty() {
            let values = self
                .image_tags
                .iter()
                .map(|t| AnyValue {
                    value: Some(any_value::Value::StringValue(t.clone())),
                })
                .collect();
            out.push(kv(
                "container.image.tags",
                any_value::Value::ArrayValue(ArrayValue { values }),
            ));
        }
        out
    }

    /// Fills what `other` knows and this does not.
    fn fill_from(&mut self, other: &Workload) {
        fn fill(a: &mut Option<String>, b: &Option<String>) {
            if a.is_none() {
                a.clone_from(b);
            }
        }
        fill(&mut self.container_name, &other.container_name);
        fill(&mut self.image_name, &other.image_name);
        if self.image_tags.is_empty() {
            self.image_tags.clone_from(&other.image_tags);
        }
        fill(&mut self.pod_name, &other.pod_name);
        fill(&mut self.pod_uid, &other.pod_uid);
        fill(&mut self.namespace, &other.namespace);
        fill(&mut self.k8s_container_name, &other.k8s_container_name);
        self.runtime = self.runtime.or(other.runtime);
    }
}

/// `root` + host path `p` (the host's files as the agent sees them).
pub fn host_path(root: &Path, p: &Path) -> PathBuf {
    root.join(p.strip_prefix("/").unwrap_or(p))
}

/// A whole file of at most `max` bytes; `None` when larger or unreadable.
pub(crate) fn read_bounded(path: &Path, max: usize) -> Option<Vec<u8>> {
    let f = std::fs::File::open(path).ok()?;
    let mut buf = Vec::new();
    f.take(max as u64 + 1).read_to_end(&mut buf).ok()?;
    (buf.len() <= max).then_some(buf)
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path, max: usize) -> Option<T> {
    serde_json::from_slice(&read_bounded(path, max)?).ok()
}

/// Most storage roots and containerd task directories remembered.
const MAX_PLACES: usize = 64;
/// Least time between two scans of /proc for a lookup that missed.
const MIN_RESCAN: Duration = Duration::from_secs(1);
/// Most task directory entries read per directory and refresh.
const MAX_TASKS: usize = 100_000;

struct Entry {
    workload: Arc<Workload>,
    seen: Instant,
}

/// Resolves cgroups to workloads, with its cache. Blocking file I/O: call
/// it off async workers (or where /proc is read anyway).
pub struct Resolver {
    enabled: bool,
    proc_path: PathBuf,
    root: PathBuf,
    pod_logs: PathBuf,
    container_logs: PathBuf,
    node_name: Option<String>,
    refresh_interval: Duration,
    cache_size: usize,
    cache: HashMap<String, Entry>,
    /// Ids looked up in vain, and when (not looked up again until the next
    /// refresh).
    misses: HashMap<String, Instant>,
    /// podman/containers-storage graph roots seen in conmon arguments.
    storage_roots: BTreeSet<PathBuf>,
    /// The host's own storage roots (storage.conf or the defaults).
    configured_roots: Vec<PathBuf>,
    /// containerd task directories (`.../io.containerd.runtime.v2.task/<ns>`,
    /// host paths) seen through shims.
    task_dirs: BTreeSet<PathBuf>,
    kubelet: kubelet::KubeletIndex,
    last_refresh: Option<Instant>,
    last_scan: Option<Instant>,
    /// Pids the last scan found not to be runtime processes: the next
    /// scans skip them (a runtime process's pid is read every scan). Most
    /// of a host's processes are not runtimes, and the scan runs every
    /// `refresh_interval` on an idle agent (a tenth of its idle CPU).
    not_runtime: HashSet<i32>,
    /// Scans since the start.
    scans: u32,
}

/// Every this many scans, every process is read again: a pid known not to
/// be a runtime process may since have been reused by one (a kill finds
/// its runtime through the victim's parents meanwhile).
const FULL_SCAN_EVERY: u32 = 6;

impl Resolver {
    /// `proc_path`: where the host's /proc is; `root`: where the host's
    /// files are (paths the runtimes name are read under it).
    pub fn new(cfg: &WorkloadConfig, proc_path: &Path, root: &Path) -> Resolver {
        let node_name = cfg
            .node_name
            .clone()
            .or_else(|| std::env::var(NODE_NAME_ENV).ok())
            .filter(|n| !n.is_empty());
        Resolver {
            enabled: cfg.enabled,
            proc_path: proc_path.to_path_buf(),
            root: root.to_path_buf(),
            pod_logs: host_path(root, &cfg.pod_logs_path),
            container_logs: host_path(root, &cfg.container_logs_path),
            node_name,
            refresh_interval: cfg.refresh_interval.get(),
            cache_size: cfg.cache_size,
            cache: HashMap::new(),
            misses: HashMap::new(),
            storage_roots: BTreeSet::new(),
            configured_roots: storage::configured_roots(root),
            task_dirs: BTreeSet::new(),
            kubelet: kubelet::KubeletIndex::default(),
            last_refresh: None,
            last_scan: None,
            not_runtime: HashSet::new(),
            scans: 0,
        }
    }

    /// The workload of memory cgroup `cgroup` (as /proc/PID/cgroup writes
    /// it); `pid`, a process in it, helps find its runtime process. `None`
    /// when the path names no container and no pod.
    pub fn resolve(&mut self, cgroup: &str, pid: Option<i32>) -> Option<Arc<Workload>> {
        let ids = container_ids(cgroup);
        if ids.container_id.is_none() && ids.pod_uid.is_none() {
            return None;
        }
        let plain = Workload {
            container_id: ids.container_id.clone(),
            pod_uid: ids.pod_uid.clone(),
            ..Workload::default()
        };
        if !self.enabled {
            return Some(Arc::new(plain));
        }
        if self.last_refresh.is_none() {
            self.refresh();
        }
        let mut w = match &ids.container_id {
            Some(id) => match self.container(id, pid) {
                Some(found) if found.pod_uid.is_some() || ids.pod_uid.is_none() => {
                    return Some(found);
                }
                Some(found) => (*found).clone(),
                None => plain.clone(),
            },
            None => plain.clone(),
        };
        w.fill_from(&plain);
        if let Some(pod) = w.pod_uid.as_ref().and_then(|u| self.kubelet.pods.get(u)) {
            // A pod's own cgroup: its name and namespace from its log directory.
            let names = Workload {
                pod_name: Some(pod.name.clone()),
                namespace: Some(pod.namespace.clone()),
                ..Workload::default()
            };
            w.fill_from(&names);
        }
        self.finish(&mut w);
        Some(Arc::new(w))
    }

    /// Runs [`Self::refresh`] when `refresh_interval` has passed.
    pub fn refresh_if_due(&mut self) {
        if !self.enabled {
            return;
        }
        if self
            .last_refresh
            .is_none_or(|t| t.elapsed() >= self.refresh_interval)
        {
            self.refresh();
        }
    }

    /// Looks every running container up, re-reads the kubelet's log
    /// directories and forgets containers not seen for four intervals.
    pub fn refresh(&mut self) {
        let now = Instant::now();
        self.last_refresh = Some(now);
        self.misses.clear();
        self.kubelet = kubelet::read_index(&self.pod_logs, &self.container_logs);
        self.scan();
        self.read_task_dirs();
        let ttl = self.refresh_interval.saturating_mul(4);
        self.cache
            .retain(|_, e| now.saturating_duration_since(e.seen) < ttl);
    }

    /// How many containers are cached (tests, diagnostics).
    pub fn cached(&self) -> usize {
        self.cache.len()
    }

    fn container(&mut self, id: &str, pid: Option<i32>) -> Option<Arc<Workload>> {
        if let Some(e) = self.cache.get_mut(id) {
            e.seen = Instant::now();
            return Some(e.workload.clone());
        }
        // The victim's own ancestors: its conmon or shim, if still there.
        if let Some(proc) = pid.and_then(|p| procs::runtime_ancestor(&self.proc_path, p)) {
            self.learn(&proc);
            if let Some(e) = self.cache.get(id) {
                return Some(e.workload.clone());
            }
        }
        if self.misses.contains_key(id) {
            return None;
        }
        if self.last_scan.is_none_or(|t| t.elapsed() >= MIN_RESCAN) {
            self.kubelet = kubelet::read_index(&self.pod_logs, &self.container_logs);
            self.scan();
            if let Some(e) = self.cache.get(id) {
                return Some(e.workload.clone());
            }
        }
        // Gone already (its conmon or shim exited): what stays on disk.
        let found = self
            .in_task_dirs(id)
            .or_else(|| self.in_storage(id))
            .or_else(|| self.in_kubelet_logs(id));
        match found {
            Some(w) => Some(self.insert(w)),
            None => {
                if self.misses.len() >= self.cache_size {
                    self.misses.clear();
                }
                self.misses.insert(id.to_string(), Instant::now());
                None
            }
        }
    }

    /// Adds Kubernetes facts from the kubelet's logs, and the node name.
    fn finish(&self, w: &mut Workload) {
        if let Some(c) = w
            .container_id
            .as_ref()
            .and_then(|id| self.kubelet.containers.get(id))
        {
            let k = Workload {
                pod_name: Some(c.pod_name.clone()),
                namespace: Some(c.namespace.clone()),
                k8s_container_name: Some(c.container_name.clone()),
                pod_uid: c.pod_uid.clone(),
                ..Workload::default()
            };
            w.fill_from(&k);
        }
        if w.is_kubernetes() {
            w.node_name.clone_from(&self.node_name);
        }
    }

    fn insert(&mut self, mut w: Workload) -> Arc<Workload> {
        self.finish(&mut w);
        let id = w.container_id.clone().unwrap_or_default();
        let workload = Arc::new(w);
        if self.cache.len() >= self.cache_size && !self.cache.contains_key(&id) {
            let oldest = self
                .cache
                .iter()
                .min_by_key(|(_, e)| e.seen)
                .map(|(k, _)| k.clone());
            if let Some(k) = oldest {
                self.cache.remove(&k);
            }
        }
        self.misses.remove(&id);
        self.cache.insert(
            id,
            Entry {
                workload: workload.clone(),
                seen: Instant::now(),
            },
        );
        workload
    }

    /// Every runtime process in /proc, learned.
    fn scan(&mut self) {
        self.last_scan = Some(Instant::now());
        if self.scans.is_multiple_of(FULL_SCAN_EVERY) {
            self.not_runtime.clear();
        }
        self.scans = self.scans.wrapping_add(1);
        let known_not = std::mem::take(&mut self.not_runtime);
        let mut not = HashSet::with_capacity(known_not.len());
        for proc in procs::scan(&self.proc_path, &known_not, &mut not) {
            self.learn(&proc);
        }
        self.not_runtime = not;
    }

    /// Caches the container(s) a runtime process stands for, and remembers
    /// where its runtime keeps state.
    fn learn(&mut self, proc: &RuntimeProcess) {
        match proc {
            RuntimeProcess::Conmon(c) => {
                if let Some(e) = self.cache.get_mut(&c.container_id) {
                    e.seen = Instant::now();
                    return;
                }
                let root = c.storage_root.clone().or_else(|| {
                    // <graphroot>/<driver>-containers/<id>/userdata
                    let b = c.bundle.as_ref()?;
                    let driver_dir = b.parent()?.parent()?;
                    driver_dir
                        .file_name()?
                        .to_str()?
                        .ends_with("-containers")
                        .then(|| driver_dir.parent().map(Path::to_path_buf))?
                });
                if let Some(r) = root {
                    if self.storage_roots.len() < MAX_PLACES {
                        self.storage_roots.insert(r);
                    }
                }
                let w = self.read_conmon(c);
                self.insert(w);
            }
            RuntimeProcess::Shim(s) => {
                let Some(bundle) = self.shim_bundle(s) else {
                    return;
                };
                if let Some(dir) = bundle.parent() {
                    if self.task_dirs.len() < MAX_PLACES || self.task_dirs.contains(dir) {
                        self.task_dirs.insert(dir.to_path_buf());
                    }
                }
                if let Some(e) = self.cache.get_mut(&s.id) {
                    e.seen = Instant::now();
                } else if let Some(w) = self.read_containerd_bundle(&s.namespace, &s.id, &bundle) {
                    self.insert(w);
                }
            }
        }
    }

    /// The shim's bundle (a host path): its working directory, else derived
    /// from containerd's address (`<state>/containerd.sock`).
    fn shim_bundle(&self, s: &procs::Shim) -> Option<PathBuf> {
        let rel = Path::new("io.containerd.runtime.v2.task")
            .join(&s.namespace)
            .join(&s.id);
        let candidates = s.cwd.iter().cloned().chain(s.address.iter().flat_map(|a| {
            let a = a.to_string_lossy();
            let a = PathBuf::from(a.strip_prefix("unix://").unwrap_or(&a));
            let state = a.parent().map(Path::to_path_buf).unwrap_or_default();
            // docker's own containerd keeps its state under `daemon/`.
            [state.join(&rel), state.join("daemon").join(&rel)]
        }));
        let mut candidates = candidates;
        candidates.find(|c| host_path(&self.root, &c.join("config.json")).is_file())
    }

    /// Looks up every container in the known containerd task directories
    /// that is not cached (a pod's containers may share one shim).
    fn read_task_dirs(&mut self) {
        let dirs: Vec<PathBuf> = self.task_dirs.iter().cloned().collect();
        for dir in dirs {
            let Some(namespace) = dir.file_name().and_then(|n| n.to_str()).map(str::to_string)
            else {
                continue;
            };
            let Ok(entries) = std::fs::read_dir(host_path(&self.root, &dir)) else {
                continue;
            };
            let ids: Vec<String> = entries
                .filter_map(Result::ok)
                .take(MAX_TASKS)
                .filter_map(|e| e.file_name().to_str().map(str::to_string))
                .collect();
            for id in ids {
                if let Some(e) = self.cache.get_mut(&id) {
                    e.seen = Instant::now();
                } else if let Some(w) = self.read_containerd_bundle(&namespace, &id, &dir.join(&id))
                {
                    self.insert(w);
                }
            }
        }
    }

    fn in_task_dirs(&self, id: &str) -> Option<Workload> {
        self.task_dirs.iter().find_map(|dir| {
            let namespace = dir.file_name()?.to_str()?;
            self.read_containerd_bundle(namespace, id, &dir.join(id))
        })
    }

    /// A containerd container from its bundle (a host path).
    fn read_containerd_bundle(&self, namespace: &str, id: &str, bundle: &Path) -> Option<Workload> {
        let spec = oci::read_spec(&self.root, bundle)?;
        let mut w = Workload {
            container_id: Some(id.to_string()),
            ..Workload::default()
        };
        if namespace == "moby" {
            w.runtime = Some("docker");
            let cfg = oci::docker_data_root(&spec, id)
                .and_then(|root| docker::read_config_v2(&host_path(&self.root, &root), id));
            if let Some(cfg) = cfg {
                if let Some(labels) = &cfg.config.labels {
                    oci::apply_kubelet_labels(&mut w, labels);
                }
                if !docker::is_sandbox(&cfg) {
                    let name = cfg.name.trim_start_matches('/');
                    if !name.is_empty() {
                        w.container_name = Some(name.to_string());
                    }
                    if !cfg.config.image.is_empty() {
                        let (name, tags) = image::split_image(&cfg.config.image);
                        w.image_name = Some(name);
                        w.image_tags = tags;
                    }
                }
            }
        } else {
            w.runtime = Some("containerd");
            if oci::is_sandbox(&spec) {
                // A pod's sandbox (pause): the pod, not a workload container.
                let mut pod = Workload::default();
                oci::apply_containerd_cri(&mut pod, &spec);
                w.pod_name = pod.pod_name;
                w.pod_uid = pod.pod_uid;
                w.namespace = pod.namespace;
            } else {
                oci::apply_containerd_cri(&mut w, &spec);
            }
        }
        Some(w)
    }

    /// A podman or CRI-O container from its conmon.
    fn read_conmon(&self, c: &procs::Conmon) -> Workload {
        let mut w = Workload {
            container_id: Some(c.container_id.clone()),
            container_name: c.name.clone(),
            ..Workload::default()
        };
        let spec = c
            .bundle
            .as_ref()
            .and_then(|b| oci::read_spec(&self.root, b));
        let podman_exit = c
            .exit_command
            .as_deref()
            .and_then(|e| e.rsplit('/').next())
            .is_some_and(|b| b == "podman");
        let manager = spec.as_ref().and_then(oci::manager);
        if manager == Some("cri-o") {
            w.runtime = Some("cri-o");
            if let Some(spec) = &spec {
                if oci::is_sandbox(spec) {
                    // The pod's infra container: pod identity only.
                    let mut pod = Workload::default();
                    oci::apply_kubelet_labels(&mut pod, &spec.annotations);
                    w.pod_name = pod.pod_name;
                    w.pod_uid = pod.pod_uid;
                    w.namespace = pod.namespace;
                    return w;
                }
                oci::apply_crio(&mut w, spec);
            }
        } else if manager == Some("libpod") || podman_exit {
            w.runtime = Some("podman");
        }
        if w.image_name.is_none() || w.container_name.is_none() {
            if let Some(stored) = self.stored_identity(c) {
                w.container_name = w.container_name.or(stored.name);
                if w.image_name.is_none() {
                    if let Some(image) = stored.image {
                        let (name, tags) = image::split_image(&image);
                        w.image_name = Some(name);
                        w.image_tags = tags;
                    }
                }
            }
        }
        w
    }

    /// containers/storage's record of a conmon's container: in the
    /// containers.json beside its bundle, or under its `--root`.
    fn stored_identity(&self, c: &procs::Conmon) -> Option<storage::StoredIdentity> {
        let beside = c
            .bundle
            .as_ref()
            .and_then(|b| Some(b.parent()?.parent()?.join("containers.json")))
            .map(|p| host_path(&self.root, &p));
        let under_root = c
            .storage_root
            .iter()
            .flat_map(|r| storage::containers_json_files(&self.root, r));
        beside
            .into_iter()
            .chain(under_root)
            .find_map(|file| storage::read_containers_json(&file).remove(&c.container_id))
    }

    /// A podman or CRI-O container whose conmon is gone (or was never
    /// seen: it can be OOM-killed and its conmon exit before any scan):
    /// its bundle and containers.json under the storage roots seen in
    /// conmon arguments and the host's configured ones.
    fn in_storage(&self, id: &str) -> Option<Workload> {
        let mut roots: Vec<&PathBuf> = self.storage_roots.iter().collect();
        roots.extend(
            self.configured_roots
                .iter()
                .filter(|r| !self.storage_roots.contains(*r)),
        );
        for storage_root in &roots {
            if let Some(bundle) = storage::bundles(&self.root, storage_root, id)
                .into_iter()
                .next()
            {
                let conmon = procs::Conmon {
                    container_id: id.to_string(),
                    bundle: Some(bundle),
                    storage_root: Some((*storage_root).clone()),
                    ..procs::Conmon::default()
                };
                return Some(self.read_conmon(&conmon));
            }
        }
        for storage_root in roots {
            for file in storage::containers_json_files(&self.root, storage_root) {
                if let Some(stored) = storage::read_containers_json(&file).remove(id) {
                    let mut w = Workload {
                        container_id: Some(id.to_string()),
                        container_name: stored.name,
                        runtime: Some("podman"),
                        ..Workload::default()
                    };
                    if let Some(image) = stored.image {
                        let (name, tags) = image::split_image(&image);
                        w.image_name = Some(name);
                        w.image_tags = tags;
                    }
                    return Some(w);
                }
            }
        }
        None
    }

    /// Kubernetes facts alone, from the kubelet's container log link.
    fn in_kubelet_logs(&self, id: &str) -> Option<Workload> {
        self.kubelet.containers.contains_key(id).then(|| Workload {
            container_id: Some(id.to_string()),
            ..Workload::default()
        })
    }
}
