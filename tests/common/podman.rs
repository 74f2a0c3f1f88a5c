//! Real containers with podman (Debian's 4.3, as root): images built from
//! local files only (no registry is reachable), containers removed on drop.
//!
//! This machine kind needs `runc` (crun refuses hybrid cgroups) and explicit
//! ulimits (root lacks CAP_SYS_RESOURCE, so podman's defaults cannot be
//! applied): [`run_args`] adds both.

use serde_json::Value;
use std::{
    path::{Path, PathBuf},
    process::{Command, Output},
    sync::Mutex,
};

/// Why podman cannot be used here, or `None` when it can.
pub fn unavailable() -> Option<String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Some("needs root (podman runs rootful containers here)".into());
    }
    match Command::new("podman").arg("--version").output() {
        Ok(out) if out.status.success() => None,
        Ok(out) => Some(format!(
            "podman --version failed: {}",
            String::from_utf8_lossy(&out.stderr)
        )),
        Err(e) => Some(format!(
            "podman not found ({e}); scripts/setup.sh installs it (apt-get install podman runc busybox-static)"
        )),
    }
}

/// Runs podman with `args`; panics with its output when it fails.
pub fn podman(args: &[&str]) -> String {
    let out = podman_output(args);
    assert!(
        out.status.success(),
        "podman {} failed ({}):\nstdout: {}\nstderr: {}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Runs podman with `args` (using runc) and returns its output, whatever it is.
/// From the temp directory: conmon writes a file named `oom` into its working
/// directory when its container is OOM-killed.
pub fn podman_output(args: &[&str]) -> Output {
    Command::new("podman")
        .current_dir(std::env::temp_dir())
        .args(["--runtime", "runc"])
        .args(args)
        .output()
        .expect("run podman")
}

/// The `podman run` options every container here needs.
pub fn run_args() -> Vec<&'static str> {
    vec![
        "--ulimit",
        "nofile=20000:20000",
        "--ulimit",
        "nproc=4096:4096",
    ]
}

/// A container that is removed (with its storage) when dropped.
#[derive(Debug)]
pub struct Container {
    pub name: String,
}

impl Container {
    /// Names a container to be removed on drop; removes a leftover of the
    /// same name first (a crashed earlier run).
    pub fn named(name: &str) -> Self {
        let _ = podman_output(&["rm", "-f", "-t", "0", name]);
        Container { name: name.into() }
    }

    /// The full id.
    pub fn id(&self) -> String {
        podman(&["inspect", "--format", "{{.Id}}", &self.name])
    }

    /// `podman run -d` of `image` with `command`, limited to `memory` (swap
    /// included); returns the full id.
    pub fn run_limited(&self, image: &str, memory: &str, command: &[&str]) -> String {
        let swap = format!("--memory-swap={memory}");
        let memory = format!("--memory={memory}");
        let mut args = vec!["run", "-d", "--name", &self.name, &memory, &swap];
        args.extend(run_args());
        args.push(image);
        args.extend(command);
        podman(&args)
    }

    /// stdout and stderr of the container so far.
    pub fn logs(&self) -> String {
        let out = podman_output(&["logs", &self.name]);
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        let _ = podman_output(&["rm", "-f", "-t", "0", &self.name]);
    }
}

/// Builds `tag` from `containerfile` with `context`, plus `options` (such
/// as `--build-arg`, `--label`).
pub fn build(tag: &str, containerfile: &Path, context: &Path, options: &[&str]) {
    let file = containerfile.to_string_lossy().into_owned();
    let ctx = context.to_string_lossy().into_owned();
    let mut args = vec!["build", "-q", "-t", tag, "-f", &file];
    args.extend(options);
    args.push(&ctx);
    podman(&args);
}

/// The victim image: a static allocator (plus busybox) on `scratch`.
pub const ALLOC_IMAGE_NAME: &str = "localhost/oomscope-test-alloc";
pub const ALLOC_IMAGE_TAG: &str = "1.0";

/// Tests of this binary holding the alloc image; the last one out removes it.
static ALLOC_IMAGE_USERS: Mutex<usize> = Mutex::new(0);

/// The alloc image (`/alloc`, `/bin/sleep`), built for this binary's tests;
/// removed when the last holder drops it.
pub struct AllocImage;

impl AllocImage {
    pub fn get() -> AllocImage {
        let mut users = ALLOC_IMAGE_USERS.lock().unwrap_or_else(|e| e.into_inner());
        if *users == 0 {
            build_alloc_image();
        }
        *users += 1;
        AllocImage
    }

    pub fn reference() -> &'static str {
        "localhost/oomscope-test-alloc:1.0"
    }
}

impl Drop for AllocImage {
    fn drop(&mut self) {
        let mut users = ALLOC_IMAGE_USERS.lock().unwrap_or_else(|e| e.into_inner());
        *users -= 1;
        if *users == 0 {
            let _ = podman_output(&["rmi", "-f", AllocImage::reference()]);
        }
    }
}

fn build_alloc_image() {
    let dir = tempfile::tempdir().expect("tempdir");
    // `/alloc`: allocates only under a memory limit of at most 256 MiB.
    super::alloc::build_static(&dir.path().join("alloc"));
    let busybox = ["/bin/busybox", "/usr/bin/busybox"]
        .into_iter()
        .find(|p| Path::new(p).is_file())
        .expect("busybox-static (scripts/setup.sh installs it)");
    std::fs::copy(busybox, dir.path().join("busybox")).expect("copy busybox");
    let file = dir.path().join("Containerfile");
    std::fs::write(
        &file,
        "FROM scratch\nCOPY busybox /bin/busybox\nCOPY busybox /bin/sh\nCOPY busybox /bin/sleep\nCOPY alloc /alloc\nCMD [\"/alloc\"]\n",
    )
    .expect("Containerfile");
    build(AllocImage::reference(), &file, dir.path(), &[]);
}

/// The repository root.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the receiver crate is in the workspace")
        .to_path_buf()
}

/// The repository's image (Containerfile), its runtime stage fed with this
/// test build's binary through `scripts/image-rootfs.sh` (the `prebuilt`
/// way: local layers only, no registry, no toolchain in a container).
/// Removed when dropped, with the intermediate images of its build (they
/// carry the label).
pub struct AgentImage {
    pub tag: String,
    label: String,
}

const BUILD_LABEL: &str = "oomscope.test.build";

impl AgentImage {
    /// Builds the image in `context` (a directory that must not exist yet
    /// or be empty); `name` makes the tag unique per test.
    pub fn build(context: &Path, name: &str) -> AgentImage {
        let status = Command::new(repo_root().join("scripts/image-rootfs.sh"))
            .arg(env!("CARGO_BIN_EXE_oomscope"))
            .arg(context.join("rootfs"))
            .status()
            .expect("run scripts/image-rootfs.sh");
        assert!(status.success(), "scripts/image-rootfs.sh failed: {status}");
        let id = format!("{name}-{}", std::process::id());
        let image = AgentImage {
            tag: format!("localhost/oomscope-test:{id}"),
            label: format!("{BUILD_LABEL}={id}"),
        };
        let label = format!("--label={}", image.label);
        build(
            &image.tag,
            &repo_root().join("Containerfile"),
            context,
            &["--build-arg", "BINARY_STAGE=prebuilt", &label],
        );
        image
    }
}

impl Drop for AgentImage {
    fn drop(&mut self) {
        let filter = format!("label={}", self.label);
        let ids = podman_output(&["images", "--all", "--quiet", "--filter", &filter]);
        let ids = String::from_utf8_lossy(&ids.stdout).into_owned();
        let mut args = vec!["rmi", "--force", self.tag.as_str()];
        args.extend(ids.split_whitespace());
        let _ = podman_output(&args);
    }
}

pub const DAEMONSET: &str = "deploy/kubernetes/base/daemonset.yaml";
pub const SECCOMP_PROFILE: &str = "deploy/kubernetes/seccomp/oomscope.json";

/// The DaemonSet's pod spec, as JSON.
pub fn daemonset_pod_spec() -> Value {
    let path = repo_root().join(DAEMONSET);
    let text = std::fs::read_to_string(&path).expect("read the DaemonSet manifest");
    let node = oomscope::config::parse_yaml(DAEMONSET, &text).expect("the manifest parses");
    let manifest: Value = oomscope::config::from_node(&node).expect("the manifest decodes");
    assert_eq!(
        manifest["kind"], "DaemonSet",
        "{DAEMONSET} is not a DaemonSet"
    );
    manifest["spec"]["template"]["spec"].clone()
}

fn is_true(v: &Value) -> bool {
    v.as_bool() == Some(true) || v.as_str() == Some("true")
}

/// What `podman run` needs to give the agent container the DaemonSet's
/// privileges and mounts: hostPID, capabilities (drop then add), the
/// Localhost seccomp profile, a read-only root, each hostPath volume at its
/// mountPath (char devices as devices), and the configMap volume from
/// `config_dir`. Asserts the spec keeps least privilege (not privileged).
pub struct PodOptions {
    pub args: Vec<String>,
    pub caps_added: Vec<String>,
}

pub fn pod_options(spec: &Value, config_dir: &Path, seccomp: SeccompChoice) -> PodOptions {
    let container = &spec["containers"][0];
    let security = &container["securityContext"];
    assert!(
        !is_true(&security["privileged"]),
        "the DaemonSet must not run privileged"
    );
    let mut args: Vec<String> = run_args().iter().map(|s| s.to_string()).collect();
    if is_true(&spec["hostPID"]) {
        args.push("--pid=host".into());
    }
    for cap in security["capabilities"]["drop"]
        .as_array()
        .into_iter()
        .flatten()
    {
        args.push(format!("--cap-drop={}", cap.as_str().unwrap_or_default()));
    }
    let mut caps_added = Vec::new();
    for cap in security["capabilities"]["add"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let cap = cap.as_str().unwrap_or_default().to_string();
        if let SeccompChoice::WithoutCapability(dropped) = seccomp {
            if cap == dropped {
                continue;
            }
        }
        args.push(format!("--cap-add={cap}"));
        caps_added.push(cap);
    }
    let profile = &spec["securityContext"]["seccompProfile"];
    assert_eq!(profile["type"], "Localhost", "the pod's seccomp profile");
    match seccomp {
        SeccompChoice::RuntimeDefault => {}
        _ => {
            let path = repo_root().join(SECCOMP_PROFILE);
            assert_eq!(
                profile["localhostProfile"].as_str(),
                path.file_name().and_then(|n| n.to_str()),
                "the DaemonSet names {SECCOMP_PROFILE}"
            );
            args.push(format!("--security-opt=seccomp={}", path.display()));
        }
    }
    if is_true(&security["readOnlyRootFilesystem"]) {
        args.push("--read-only".into());
    }
    let volumes = spec["volumes"].as_array().cloned().unwrap_or_default();
    for mount in container["volumeMounts"].as_array().into_iter().flatten() {
        let name = mount["name"].as_str().unwrap_or_default();
        let target = mount["mountPath"].as_str().unwrap_or_default();
        let ro = if is_true(&mount["readOnly"]) {
            ":ro"
        } else {
            ""
        };
        let volume = volumes
            .iter()
            .find(|v| v["name"] == name)
            .unwrap_or_else(|| panic!("volumeMount {name} has no volume"));
        if volume["configMap"].is_object() {
            args.push(format!("--volume={}:{target}{ro}", config_dir.display()));
        } else if let Some(host) = volume["hostPath"]["path"].as_str() {
            if volume["hostPath"]["type"] == "CharDevice" {
                args.push(format!("--device={host}:{target}:r"));
            } else if name == "state" {
                // Each test run gets its own state, not the host's.
                args.push(format!(
                    "--volume={}:{target}",
                    config_dir.join("state").display()
                ));
            } else {
                if volume["hostPath"]["type"] == "DirectoryOrCreate" {
                    std::fs::create_dir_all(host).expect("create a hostPath directory");
                }
                args.push(format!("--volume={host}:{target}{ro}"));
            }
        } else {
            panic!("volume {name}: neither hostPath nor configMap");
        }
    }
    PodOptions { args, caps_added }
}

#[derive(Clone, Copy, PartialEq)]
pub enum SeccompChoice {
    /// The DaemonSet as written.
    Profile,
    /// The runtime's default profile instead of oomscope.json.
    RuntimeDefault,
    /// The profile, but without this capability.
    WithoutCapability(&'static str),
}

/// A string attribute of a resource's `attributes` (OTLP JSON).
pub fn resource_str(attrs: &Value, key: &str) -> Option<String> {
    super::otlp::json_attr(attrs, key)?["stringValue"]
        .as_str()
        .map(str::to_string)
}

/// `container.image.tags`, a string array.
pub fn resource_tags(attrs: &Value) -> Option<Vec<String>> {
    let values = super::otlp::json_attr(attrs, "container.image.tags")?["arrayValue"]["values"]
        .as_array()?;
    values
        .iter()
        .map(|v| v["stringValue"].as_str().map(str::to_string))
        .collect()
}

/// Asserts that a resource's `attributes` name the podman container `name`
/// (id `id`) running the alloc image.
pub fn assert_alloc_container_resource(attrs: &Value, name: &str, id: &str) {
    assert_eq!(
        resource_str(attrs, "container.id").as_deref(),
        Some(id),
        "{attrs:#}"
    );
    assert_eq!(
        resource_str(attrs, "container.name").as_deref(),
        Some(name),
        "{attrs:#}"
    );
    assert_eq!(
        resource_str(attrs, "container.runtime.name").as_deref(),
        Some("podman"),
        "{attrs:#}"
    );
    assert_eq!(
        resource_str(attrs, "container.image.name").as_deref(),
        Some(ALLOC_IMAGE_NAME),
        "{attrs:#}"
    );
    assert_eq!(
        resource_tags(attrs),
        Some(vec![ALLOC_IMAGE_TAG.to_string()]),
        "{attrs:#}"
    );
}
