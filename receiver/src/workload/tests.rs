//! Node layouts of each runtime, in the runtimes' real formats, under a
//! temporary root with a fake /proc (comm, cmdline, stat, cwd links).
//!
//! The JSON documents in `fixtures/` follow (trimmed, with ids substituted):
//! - `containerd-*-config.json`: the OCI runtime spec's config.json
//!   (<https://github.com/opencontainers/runtime-spec/blob/main/config.md>)
//!   with containerd CRI annotations
//!   (<https://github.com/containerd/containerd/blob/main/internal/cri/annotations/annotations.go>);
//! - `crio-container-config.json`: config.json as CRI-O writes it
//!   (`io.kubernetes.cri-o.*` from <https://github.com/cri-o/cri-o>, plus the
//!   kubelet's `io.kubernetes.pod.*` labels);
//! - `docker-bundle-config.json` / `docker-config.v2.json`: the bundle of a
//!   container in containerd namespace `moby`, and moby's
//!   `daemon/container` on-disk record;
//! - `podman-bundle-config.json` / `podman-containers.json`: podman 4.3's
//!   bundle (as recorded on this project's test machine) and
//!   containers/storage's `containers.json`
//!   (<https://github.com/containers/storage/blob/main/containers.go>);
//! - the kubelet's `/var/log/pods` and `/var/log/containers` layout
//!   (<https://github.com/kubernetes/design-proposals-archive/blob/main/node/kubelet-cri-logging.md>).

use std::path::{Path, PathBuf};

use opentelemetry_proto::tonic::common::v1::any_value;

use super::*;

const POD_UID: &str = "5d1c2b3a-4e5f-4a6b-8c7d-9e0f1a2b3c4d";
const SANDBOX_ID: &str = "1f04600dc6949359da68eee5fe7c4069706a567c07d1ef89fe3bbfdeac7a6dca";
const APP_ID: &str = "8a3f9d2c4b1e6f70a9b8c7d6e5f40312a1b2c3d4e5f60718293a4b5c6d7e8f90";
const OTHER_ID: &str = "337a88232145e348ea79b36d30c171bcbc569fb7c6dac82f15185a0b42276bb1";

fn fixture(name: &str, container_id: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("src/workload/fixtures")
        .join(name);
    std::fs::read_to_string(&path)
        .expect("fixture")
        .replace("SANDBOX_ID", SANDBOX_ID)
        .replace("CONTAINER_ID", container_id)
        .replace("CONTAINER_SHORT", &container_id[..12])
        .replace("OTHER_ID", OTHER_ID)
        .replace("POD_UNDERSCORED", &POD_UID.replace('-', "_"))
        .replace("POD_UID", POD_UID)
}

/// A host root with a fake /proc in `<root>/proc`.
struct Node {
    dir: tempfile::TempDir,
}

impl Node {
    fn new() -> Node {
        Node {
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }

    fn root(&self) -> &Path {
        self.dir.path()
    }

    fn proc(&self) -> PathBuf {
        self.root().join("proc")
    }

    /// Writes `content` at host path `path`.
    fn file(&self, path: &str, content: &str) {
        let p = host_path(self.root(), Path::new(path));
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(p, content).expect("write");
    }

    /// A symlink at host path `path` to `target` (a host path, unresolved).
    fn link(&self, path: &str, target: &str) {
        let p = host_path(self.root(), Path::new(path));
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::os::unix::fs::symlink(target, p).expect("symlink");
    }

    /// A process in the fake /proc.
    fn process(&self, pid: i32, ppid: i32, comm: &str, argv: &[&str], cwd: Option<&str>) {
        let dir = self.proc().join(pid.to_string());
        std::fs::create_dir_all(&dir).expect("mkdir");
        std::fs::write(dir.join("comm"), format!("{comm}\n")).expect("comm");
        let mut cmdline = argv.join("\0");
        cmdline.push('\0');
        std::fs::write(dir.join("cmdline"), cmdline).expect("cmdline");
        std::fs::write(
            dir.join("stat"),
            format!("{pid} ({comm}) S {ppid} {pid} {pid} 0 -1 4194560 0 0 0 0\n"),
        )
        .expect("stat");
        if let Some(cwd) = cwd {
            std::os::unix::fs::symlink(cwd, dir.join("cwd")).expect("cwd");
        }
    }

    fn resolver(&self, cfg: WorkloadConfig) -> Resolver {
        Resolver::new(&cfg, &self.proc(), self.root())
    }
}

fn cfg_with_node(node: &str) -> WorkloadConfig {
    WorkloadConfig {
        node_name: Some(node.to_string()),
        ..WorkloadConfig::default()
    }
}

/// (key, value) of the string attributes, and the image tags.
fn attrs(w: &Workload) -> (Vec<(String, String)>, Vec<String>) {
    let mut strings = Vec::new();
    let mut tags = Vec::new();
    for kv in w.resource_attributes() {
        match kv.value.and_then(|v| v.value) {
            Some(any_value::Value::StringValue(s)) => strings.push((kv.key, s)),
            Some(any_value::Value::ArrayValue(a)) => {
                assert_eq!(kv.key, "container.image.tags");
                for v in a.values {
                    match v.value {
                        Some(any_value::Value::StringValue(s)) => tags.push(s),
                        other => panic!("a tag that is not a string: {other:?}"),
                    }
                }
            }
            other => panic!("{}: unexpected {other:?}", kv.key),
        }
    }
    (strings, tags)
}

fn get<'a>(a: &'a [(String, String)], key: &str) -> Option<&'a str> {
    a.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

fn kubelet_logs(node: &Node, container: &str, id: &str) {
    let pod_dir = format!("/var/log/pods/shop_cart-7d9f_{POD_UID}");
    node.file(&format!("{pod_dir}/{container}/0.log"), "");
    node.link(
        &format!("/var/log/containers/cart-7d9f_shop_{container}-{id}.log"),
        &format!("{pod_dir}/{container}/0.log"),
    );
}

#[test]
fn containerd_with_kubelet_logs() {
    let node = Node::new();
    let tasks = "/run/containerd/io.containerd.runtime.v2.task/k8s.io";
    node.file(
        &format!("{tasks}/{SANDBOX_ID}/config.json"),
        &fixture("containerd-sandbox-config.json", SANDBOX_ID),
    );
    node.file(
        &format!("{tasks}/{APP_ID}/config.json"),
        &fixture("containerd-container-config.json", APP_ID),
    );
    // One shim per pod (the sandbox's id); the app container is its sibling.
    node.process(
        700,
        1,
        "containerd-shim",
        &[
            "/usr/bin/containerd-shim-runc-v2",
            "-namespace",
            "k8s.io",
            "-id",
            SANDBOX_ID,
            "-address",
            "/run/containerd/containerd.sock",
        ],
        Some(&format!("{tasks}/{SANDBOX_ID}")),
    );
    kubelet_logs(&node, "app", APP_ID);
    let mut r = node.resolver(cfg_with_node("node-7"));
    let pod_slice = format!(
        "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{}.slice",
        POD_UID.replace('-', "_")
    );
    let w = r
        .resolve(&format!("{pod_slice}/cri-containerd-{APP_ID}.scope"), None)
        .expect("a container");
    let (a, tags) = attrs(&w);
    assert_eq!(get(&a, "container.id"), Some(APP_ID));
    assert_eq!(get(&a, "container.name"), Some("app"));
    assert_eq!(get(&a, "container.runtime.name"), Some("containerd"));
    assert_eq!(
        get(&a, "container.image.name"),
        Some("docker.io/library/nginx")
    );
    assert_eq!(tags, ["1.25"]);
    assert_eq!(get(&a, "k8s.pod.name"), Some("cart-7d9f"));
    assert_eq!(get(&a, "k8s.pod.uid"), Some(POD_UID));
    assert_eq!(get(&a, "k8s.namespace.name"), Some("shop"));
    assert_eq!(get(&a, "k8s.container.name"), Some("app"));
    assert_eq!(get(&a, "k8s.node.name"), Some("node-7"));

    // The sandbox's cgroup: the pod, no container name or image.
    let sandbox = r
        .resolve(
            &format!("{pod_slice}/cri-containerd-{SANDBOX_ID}.scope"),
            None,
        )
        .expect("the sandbox");
    assert_eq!(sandbox.pod_name.as_deref(), Some("cart-7d9f"));
    assert_eq!(sandbox.container_name, None);
    assert_eq!(sandbox.image_name, None);

    // The pod's own cgroup: named from its log directory.
    let pod = r.resolve(&pod_slice, None).expect("a pod");
    let (a, _) = attrs(&pod);
    assert_eq!(get(&a, "container.id"), None);
    assert_eq!(get(&a, "k8s.pod.uid"), Some(POD_UID));
    assert_eq!(get(&a, "k8s.pod.name"), Some("cart-7d9f"));
    assert_eq!(get(&a, "k8s.namespace.name"), Some("shop"));
    assert_eq!(get(&a, "k8s.node.name"), Some("node-7"));

    // Not a container or pod: nothing.
    assert!(r.resolve("/system.slice/cron.service", None).is_none());
}

/// A shim whose working directory cannot be read (no ptrace rights): the
/// bundle is found from containerd's address.
#[test]
fn containerd_shim_without_cwd_uses_the_address() {
    let node = Node::new();
    let tasks = "/run/k3s/containerd/io.containerd.runtime.v2.task/k8s.io";
    node.file(
        &format!("{tasks}/{APP_ID}/config.json"),
        &fixture("containerd-container-config.json", APP_ID),
    );
    node.process(
        701,
        1,
        "containerd-shim",
        &[
            "/var/lib/rancher/k3s/data/current/bin/containerd-shim-runc-v2",
            "-namespace",
            "k8s.io",
            "-id",
            APP_ID,
            "-address",
            "/run/k3s/containerd/containerd.sock",
        ],
        None,
    );
    let mut r = node.resolver(WorkloadConfig::default());
    let w = r
        .resolve(&format!("/kubepods/burstable/pod{POD_UID}/{APP_ID}"), None)
        .expect("a container");
    assert_eq!(w.container_name.as_deref(), Some("app"));
    assert_eq!(w.namespace.as_deref(), Some("shop"));
}

/// No runtime state readable at all: the kubelet's log links still name
/// the pod and container.
#[test]
fn kubelet_logs_alone() {
    let node = Node::new();
    kubelet_logs(&node, "worker", OTHER_ID);
    let mut r = node.resolver(cfg_with_node("node-1"));
    let w = r
        .resolve(
            &format!("/kubepods/besteffort/pod{POD_UID}/{OTHER_ID}"),
            None,
        )
        .expect("a container");
    let (a, _) = attrs(&w);
    assert_eq!(get(&a, "container.id"), Some(OTHER_ID));
    assert_eq!(get(&a, "k8s.container.name"), Some("worker"));
    assert_eq!(get(&a, "k8s.pod.name"), Some("cart-7d9f"));
    assert_eq!(get(&a, "k8s.pod.uid"), Some(POD_UID));
    assert_eq!(get(&a, "k8s.namespace.name"), Some("shop"));
    assert_eq!(get(&a, "container.runtime.name"), None, "not known");
}

#[test]
fn crio_from_conmon_and_annotations() {
    let node = Node::new();
    let bundle = format!("/run/containers/storage/overlay-containers/{APP_ID}/userdata");
    node.file(
        &format!("{bundle}/config.json"),
        &fixture("crio-container-config.json", APP_ID),
    );
    // CRI-O's conmon arguments (cri-o internal/oci/runtime_oci.go).
    let log = format!("/var/log/pods/shop_cart-7d9f_{POD_UID}/app/0.log");
    let name = format!("k8s_app_cart-7d9f_shop_{POD_UID}_0");
    node.process(
        800,
        1,
        "conmon",
        &[
            "/usr/bin/conmon",
            "-b",
            &bundle,
            "-c",
            APP_ID,
            "--exit-dir",
            "/var/run/crio/exits",
            "-l",
            &log,
            "--log-level",
            "info",
            "-n",
            &name,
            "-P",
            &format!("{bundle}/conmon-pidfile"),
            "-p",
            &format!("{bundle}/pidfile"),
            "--persist-dir",
            &format!("/var/lib/containers/storage/overlay-containers/{APP_ID}/userdata"),
            "-r",
            "/usr/bin/runc",
            "--runtime-arg",
            "--root=/run/runc",
            "--socket-dir-path",
            "/var/run/crio",
            "--syslog",
            "-u",
            APP_ID,
            "-s",
        ],
        Some(&bundle),
    );
    let mut r = node.resolver(cfg_with_node("node-3"));
    let w = r
        .resolve(
            &format!(
                "/kubepods.slice/kubepods-pod{}.slice/crio-{APP_ID}.scope",
                POD_UID.replace('-', "_")
            ),
            None,
        )
        .expect("a container");
    let (a, tags) = attrs(&w);
    assert_eq!(get(&a, "container.runtime.name"), Some("cri-o"));
    assert_eq!(get(&a, "container.name"), Some(name.as_str()));
    assert_eq!(get(&a, "container.image.name"), Some("quay.io/acme/app"));
    assert_eq!(tags, ["2.1"]);
    assert_eq!(get(&a, "k8s.pod.name"), Some("cart-7d9f"));
    assert_eq!(get(&a, "k8s.pod.uid"), Some(POD_UID));
    assert_eq!(get(&a, "k8s.namespace.name"), Some("shop"));
    assert_eq!(get(&a, "k8s.container.name"), Some("app"));
    assert_eq!(get(&a, "k8s.node.name"), Some("node-3"));
}

#[test]
fn docker_from_the_moby_shim_and_config_v2() {
    let node = Node::new();
    let bundle = format!("/run/containerd/io.containerd.runtime.v2.task/moby/{APP_ID}");
    node.file(
        &format!("{bundle}/config.json"),
        &fixture("docker-bundle-config.json", APP_ID),
    );
    // A data root that is not docker's default: found from the mounts.
    node.file(
        &format!("/data/docker/containers/{APP_ID}/config.v2.json"),
        &fixture("docker-config.v2.json", APP_ID),
    );
    node.process(
        900,
        1,
        "containerd-shim",
        &[
            "/usr/bin/containerd-shim-runc-v2",
            "-namespace",
            "moby",
            "-id",
            APP_ID,
            "-address",
            "/run/containerd/containerd.sock",
        ],
        Some(&bundle),
    );
    let mut r = node.resolver(cfg_with_node("node-9"));
    let w = r
        .resolve(&format!("/system.slice/docker-{APP_ID}.scope"), None)
        .expect("a container");
    let (a, tags) = attrs(&w);
    assert_eq!(get(&a, "container.runtime.name"), Some("docker"));
    assert_eq!(get(&a, "container.name"), Some("web"));
    assert_eq!(
        get(&a, "container.image.name"),
        Some("registry.local:5000/team/web")
    );
    assert_eq!(tags, ["3"]);
    assert_eq!(get(&a, "k8s.pod.name"), None);
    assert_eq!(get(&a, "k8s.node.name"), None, "not a Kubernetes workload");
}

#[test]
fn podman_with_a_custom_root_and_after_its_conmon_exited() {
    let node = Node::new();
    let graphroot = "/srv/containers";
    let bundle = format!("{graphroot}/overlay-containers/{APP_ID}/userdata");
    node.file(
        &format!("{bundle}/config.json"),
        &fixture("podman-bundle-config.json", APP_ID),
    );
    node.file(
        &format!("{graphroot}/overlay-containers/containers.json"),
        &fixture("podman-containers.json", APP_ID),
    );
    // podman 4.3's conmon, as on this project's test machine (note the empty
    // `--network-config-dir` argument).
    let run = format!("/run/containers/storage/overlay-containers/{APP_ID}/userdata");
    node.process(
        1000,
        1,
        "conmon",
        &[
            "/usr/bin/conmon",
            "--api-version",
            "1",
            "-c",
            APP_ID,
            "-u",
            APP_ID,
            "-r",
            "/usr/bin/runc",
            "-b",
            &bundle,
            "-p",
            &format!("{run}/pidfile"),
            "-n",
            "victim1",
            "--exit-dir",
            "/run/libpod/exits",
            "--full-attach",
            "-l",
            &format!("k8s-file:{bundle}/ctr.log"),
            "--log-level",
            "warning",
            "--conmon-pidfile",
            &format!("{run}/conmon.pid"),
            "--exit-command",
            "/usr/bin/podman",
            "--exit-command-arg",
            "--root",
            "--exit-command-arg",
            graphroot,
            "--exit-command-arg",
            "--runroot",
            "--exit-command-arg",
            "/run/containers/storage",
            "--exit-command-arg",
            "--network-config-dir",
            "--exit-command-arg",
            "",
            "--exit-command-arg",
            "container",
            "--exit-command-arg",
            "cleanup",
            "--exit-command-arg",
            APP_ID,
        ],
        Some("/tmp"),
    );
    // The container's init, conmon's child.
    node.process(1001, 1000, "alloc", &["/alloc"], Some("/"));
    let mut r = node.resolver(cfg_with_node("node-2"));
    let cgroup = format!("/libpod_parent/libpod-{APP_ID}");
    let w = r.resolve(&cgroup, Some(1001)).expect("a container");
    let (a, tags) = attrs(&w);
    assert_eq!(get(&a, "container.id"), Some(APP_ID));
    assert_eq!(get(&a, "container.runtime.name"), Some("podman"));
    assert_eq!(get(&a, "container.name"), Some("victim1"));
    assert_eq!(get(&a, "container.image.name"), Some("localhost/bb"));
    assert_eq!(tags, ["1.0"]);
    assert_eq!(get(&a, "k8s.node.name"), None, "not a Kubernetes workload");

    // conmon exits right after an OOM kill: the cached entry still answers,
    // and a container never seen running is found in containers.json.
    std::fs::remove_dir_all(node.proc().join("1000")).expect("rm");
    std::fs::remove_dir_all(node.proc().join("1001")).expect("rm");
    let again = r.resolve(&cgroup, Some(1001)).expect("cached");
    assert_eq!(again.container_name.as_deref(), Some("victim1"));
    let gone = r
        .resolve(&format!("/libpod_parent/libpod-{OTHER_ID}"), None)
        .expect("from containers.json");
    assert_eq!(gone.container_name.as_deref(), Some("gone1"));
    assert_eq!(gone.runtime, Some("podman"));
    assert_eq!(gone.image_name.as_deref(), Some("host:5000/team/gone"));
    assert!(gone.image_tags.is_empty(), "a digest is not a tag");
}

/// A container OOM-killed so soon that no scan ever saw its conmon (it has
/// exited by the time of the lookup): found on disk under the host's
/// default storage roots, with its runtime told apart by its bundle.
#[test]
fn containers_never_seen_running_are_found_under_the_default_roots() {
    let node = Node::new();
    let graphroot = "/var/lib/containers/storage";
    node.file(
        &format!("{graphroot}/overlay-containers/{APP_ID}/userdata/config.json"),
        &fixture("podman-bundle-config.json", APP_ID),
    );
    node.file(
        &format!("{graphroot}/overlay-containers/containers.json"),
        &fixture("podman-containers.json", APP_ID),
    );
    // CRI-O's bundle is under the runroot.
    node.file(
        &format!("/run/containers/storage/overlay-containers/{OTHER_ID}/userdata/config.json"),
        &fixture("crio-container-config.json", OTHER_ID),
    );
    let mut r = node.resolver(WorkloadConfig::default());
    r.refresh();
    assert_eq!(r.cached(), 0, "no runtime process: nothing known ahead");
    let podman = r
        .resolve(&format!("/libpod_parent/libpod-{APP_ID}"), None)
        .expect("a container");
    assert_eq!(podman.runtime, Some("podman"));
    assert_eq!(podman.container_name.as_deref(), Some("victim1"));
    assert_eq!(podman.image_name.as_deref(), Some("localhost/bb"));
    assert_eq!(podman.image_tags, ["1.0"]);
    let crio = r
        .resolve(
            &format!(
                "/kubepods.slice/kubepods-pod{}.slice/crio-{OTHER_ID}.scope",
                POD_UID.replace('-', "_")
            ),
            None,
        )
        .expect("a container");
    assert_eq!(crio.runtime, Some("cri-o"));
    assert_eq!(crio.k8s_container_name.as_deref(), Some("app"));
    assert_eq!(crio.pod_name.as_deref(), Some("cart-7d9f"));
    assert_eq!(r.cached(), 2, "both remembered");
}

/// storage.conf moves the roots: the administrator's file wins over the
/// distribution's, and the defaults are then not looked at.
#[test]
fn storage_conf_names_the_roots() {
    let node = Node::new();
    node.file(
        "/usr/share/containers/storage.conf",
        "[storage]\ngraphroot = \"/ignored\"\n",
    );
    node.file(
        "/etc/containers/storage.conf",
        "# comment\n[storage]\ndriver = \"overlay\"\nrunroot = '/run/cs'\ngraphroot = \"/data/cs\"  # moved\n[storage.options]\ngraphroot = \"/not/this\"\n",
    );
    node.file(
        &format!("/data/cs/overlay-containers/{APP_ID}/userdata/config.json"),
        &fixture("podman-bundle-config.json", APP_ID),
    );
    node.file(
        "/data/cs/overlay-containers/containers.json",
        &fixture("podman-containers.json", APP_ID),
    );
    // Under the default root, a different answer that must not be used.
    node.file(
        "/var/lib/containers/storage/overlay-containers/containers.json",
        &fixture("podman-containers.json", APP_ID).replace("victim1", "wrong"),
    );
    assert_eq!(
        storage::configured_roots(node.root()),
        [PathBuf::from("/data/cs"), PathBuf::from("/run/cs")]
    );
    let mut r = node.resolver(WorkloadConfig::default());
    let w = r
        .resolve(&format!("/libpod_parent/libpod-{APP_ID}"), None)
        .expect("a container");
    assert_eq!(w.container_name.as_deref(), Some("victim1"));
}

#[test]
fn storage_conf_parsing() {
    use storage::parse_storage_conf as parse;
    assert_eq!(parse(""), (None, None));
    // Outside [storage], relative, unterminated or unquoted: ignored.
    assert_eq!(
        parse("graphroot = \"/a\"\n[storage]\nrunroot = \"rel\"\ngraphroot = \"/b\nrunroot = /c\n"),
        (None, None)
    );
    assert_eq!(
        parse("[storage]\n  graphroot=\"/g\"\n\trunroot = '/r'\n"),
        (Some(PathBuf::from("/g")), Some(PathBuf::from("/r")))
    );
}

#[test]
fn the_cache_is_bounded() {
    let node = Node::new();
    let graphroot = "/var/lib/containers/storage";
    for (pid, id, name) in [(10, APP_ID, "one"), (20, OTHER_ID, "two")] {
        let bundle = format!("{graphroot}/overlay-containers/{id}/userdata");
        node.file(
            &format!("{bundle}/config.json"),
            &fixture("podman-bundle-config.json", id),
        );
        node.process(
            pid,
            1,
            "conmon",
            &["/usr/bin/conmon", "-c", id, "-n", name, "-b", &bundle],
            None,
        );
    }
    let mut r = node.resolver(WorkloadConfig {
        cache_size: 1,
        ..WorkloadConfig::default()
    });
    r.refresh();
    assert_eq!(r.cached(), 1);
    let w = r
        .resolve(&format!("/libpod_parent/libpod-{APP_ID}"), None)
        .expect("found");
    assert_eq!(w.container_name.as_deref(), Some("one"));
    assert_eq!(r.cached(), 1);
}

#[test]
fn bad_files_leave_attributes_out() {
    let node = Node::new();
    let bundle = format!("/run/containerd/io.containerd.runtime.v2.task/k8s.io/{APP_ID}");
    node.file(&format!("{bundle}/config.json"), "{\"annotations\": [1, 2");
    node.process(
        5,
        1,
        "containerd-shim",
        &["containerd-shim-runc-v2", "-namespace", "k8s.io", "-id"],
        Some(&bundle),
    );
    node.process(6, 1, "conmon", &["/usr/bin/conmon", "-c"], None);
    node.process(7, 1, "conmon", &[], None);
    let mut r = node.resolver(WorkloadConfig::default());
    let w = r
        .resolve(&format!("/kubepods/pod{POD_UID}/{APP_ID}"), None)
        .expect("ids");
    assert_eq!(w.container_id.as_deref(), Some(APP_ID));
    assert_eq!(w.pod_uid.as_deref(), Some(POD_UID));
    assert_eq!(w.container_name, None);
    assert_eq!(w.image_name, None);
}

#[test]
fn disabled_gives_the_path_ids_only() {
    let node = Node::new();
    kubelet_logs(&node, "app", APP_ID);
    let mut r = node.resolver(WorkloadConfig {
        enabled: false,
        node_name: Some("n".into()),
        ..WorkloadConfig::default()
    });
    let w = r
        .resolve(&format!("/kubepods/pod{POD_UID}/{APP_ID}"), None)
        .expect("ids");
    let (a, _) = attrs(&w);
    assert_eq!(
        a,
        vec![
            ("container.id".to_string(), APP_ID.to_string()),
            ("k8s.pod.uid".to_string(), POD_UID.to_string()),
        ]
    );
}

#[test]
fn argv_parsing_keeps_empty_arguments() {
    assert_eq!(procs::split_argv(b"a\0\0b\0"), vec!["a", "", "b"]);
    assert!(procs::split_argv(b"").is_empty());
    let conmon = procs::parse_runtime(
        1,
        &procs::split_argv(b"/usr/bin/conmon\0--cid=abc\0--name=x\0--bundle=/b\0"),
        None,
    );
    assert_eq!(
        conmon,
        Some(procs::RuntimeProcess::Conmon(procs::Conmon {
            container_id: "abc".into(),
            name: Some("x".into()),
            bundle: Some(PathBuf::from("/b")),
            storage_root: None,
            exit_command: None,
        }))
    );
}

#[test]
fn config_checks() {
    assert!(WorkloadConfig::default().validate().is_ok());
    let bad = [
        WorkloadConfig {
            cache_size: 0,
            ..WorkloadConfig::default()
        },
        WorkloadConfig {
            refresh_interval: GoDuration::from_millis(10),
            ..WorkloadConfig::default()
        },
        WorkloadConfig {
            pod_logs_path: PathBuf::from("var/log/pods"),
            ..WorkloadConfig::default()
        },
        WorkloadConfig {
            node_name: Some(String::new()),
            ..WorkloadConfig::default()
        },
    ];
    for cfg in bad {
        assert!(cfg.validate().is_err(), "{cfg:?}");
    }
}

/// A scan reads each process's name once: pids found not to be runtime
/// processes are skipped by the next scans, but for every
/// `FULL_SCAN_EVERY`-th, which reads them all again (a pid reused by a
/// runtime process is learned then). New pids are read at once.
#[test]
fn scans_skip_processes_known_not_to_be_runtimes() {
    let node = Node::new();
    node.process(100, 1, "bash", &["bash"], None);
    let mut r = node.resolver(cfg_with_node("node-1"));
    r.refresh();
    assert!(r.not_runtime.contains(&100));
    // Pid 100 reused by a shim: not seen while it is skipped.
    let shim = "/run/containerd/io.containerd.runtime.v2.task/k8s.io";
    std::fs::remove_dir_all(node.proc().join("100")).expect("rm");
    node.process(
        100,
        1,
        "containerd-shim",
        &[
            "/usr/bin/containerd-shim-runc-v2",
            "-namespace",
            "k8s.io",
            "-id",
            APP_ID,
            "-address",
            "/run/containerd/containerd.sock",
        ],
        Some(&format!("{shim}/{APP_ID}")),
    );
    // A new process is read at its first scan.
    node.process(101, 1, "sleep", &["sleep"], None);
    for _ in 1..FULL_SCAN_EVERY {
        r.scan();
        assert!(r.not_runtime.contains(&100), "a skipped pid is not read");
        assert!(r.not_runtime.contains(&101));
    }
    r.scan();
    assert!(!r.not_runtime.contains(&100), "read again: a runtime now");
    assert!(r.not_runtime.contains(&101));
}
