//! What ships for deployment, checked where it runs:
//! - the container image (`Containerfile`) built with podman from this
//!   test's binary and local layers only (`FROM scratch`, no registry), run
//!   with `--version`, `validate`, and as the agent with the DaemonSet's
//!   mounts, capabilities and seccomp profile (not `--privileged`);
//! - the Kubernetes manifests (`deploy/kubernetes/`) rendered with `kubectl
//!   kustomize` and validated offline against the Kubernetes API schema
//!   (`kubernetes-validate --strict`, from the peers' venv), and the
//!   DaemonSet's pod template run with `podman kube play`;
//! - the systemd unit (`deploy/systemd/`) checked with `systemd-analyze
//!   verify`, and the `.deb` (`scripts/package-deb.sh`) installed with
//!   `dpkg -i`, checked and purged.
//!
//! Needs root for podman and dpkg; skips with a printed reason where the
//! host lacks the tool.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::podman::{daemonset_pod_spec, pod_options, AgentImage as Image, SeccompChoice};
use common::{free_port, is_root, machine_lock, skip, venv_python, LockMode};

const TIMEOUT: Duration = Duration::from_secs(90);
/// The Kubernetes API version the manifests are validated against (the
/// schemas `kubernetes-validate` bundles), and a recent one.
const KUBERNETES_VERSIONS: [&str; 2] = ["1.30.0", "1.37.0"];
/// The capabilities the DaemonSet (and the podman run below) give the agent.
const CAPABILITIES: [&str; 4] = ["BPF", "PERFMON", "SYSLOG", "SYS_PTRACE"];

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("receiver/ has a parent")
        .to_path_buf()
}

fn describe(output: &Output) -> String {
    format!(
        "exit status {:?}\nstdout:\n{}\nstderr:\n{}",
        output.status.code(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// Runs `cmd`, panicking with its output unless it succeeds.
fn run_ok(cmd: &mut Command) -> Output {
    let output = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        output.status.success(),
        "{cmd:?} failed\n{}",
        describe(&output)
    );
    output
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn have(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Why `kubectl kustomize` cannot render the manifests here, if it cannot:
/// they use kustomize v5 (`labels`, components), which kubectl has embedded
/// since 1.27 (Debian 12's kubernetes-client, 1.20, has kustomize v2).
fn kustomize_missing() -> Option<String> {
    if !have("kubectl") {
        return Some("kubectl is not installed (scripts/setup.sh --with-peers installs it)".into());
    }
    let output = Command::new("kubectl")
        .args(["version", "--client"])
        .output()
        .ok()?;
    let text = stdout(&output);
    let major = text
        .lines()
        .find_map(|l| l.strip_prefix("Kustomize Version: v"))
        .and_then(|v| v.split('.').next()?.parse::<u32>().ok());
    match major {
        Some(major) if major >= 5 => None,
        _ => Some(format!(
            "kubectl's kustomize is older than v5 (kubectl 1.27+ needed): {}",
            text.trim()
        )),
    }
}

/// `kubectl kustomize DIR`.
fn kustomize(dir: &Path) -> String {
    stdout(&run_ok(Command::new("kubectl").arg("kustomize").arg(dir)))
}

/// The YAML documents of `yaml` as JSON values (PyYAML, a dependency of
/// kubernetes-validate, in the peers' venv).
fn yaml_documents(yaml: &str) -> Vec<serde_json::Value> {
    use std::io::Write as _;
    let mut child = Command::new(venv_python())
        .args([
            "-c",
            "import json, sys, yaml; json.dump(list(yaml.safe_load_all(sys.stdin)), sys.stdout)",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run the venv python");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(yaml.as_bytes())
        .expect("write the YAML");
    let output = child.wait_with_output().expect("wait for python");
    assert!(output.status.success(), "{}", describe(&output));
    serde_json::from_slice(&output.stdout).expect("JSON from python")
}

fn kind<'a>(docs: &'a [serde_json::Value], kind: &str) -> &'a serde_json::Value {
    docs.iter()
        .find(|d| d["kind"] == kind)
        .unwrap_or_else(|| panic!("no {kind} in the rendered manifests"))
}

/// `kubernetes-validate --strict` on one file of rendered manifests.
fn kubernetes_validate(file: &Path, version: &str) -> Output {
    let bin = venv_python().with_file_name("kubernetes-validate");
    assert!(
        bin.is_file(),
        "{} not found: run scripts/setup.sh --with-peers",
        bin.display()
    );
    Command::new(bin)
        .args(["--strict", "--kubernetes-version", version])
        .arg(file)
        .output()
        .expect("run kubernetes-validate")
}

#[test]
fn kubernetes_manifests_render_and_validate_against_the_api_schema() {
    const TEST: &str = "kubernetes_manifests_render_and_validate_against_the_api_schema";
    if let Some(why) = kustomize_missing() {
        return skip(TEST, why);
    }
    let k8s = repo_root().join("deploy/kubernetes");
    let dir = tempfile::tempdir().expect("tempdir");
    // The kernel-log component on the base, as an overlay would use it.
    let with_component = dir.path().join("with-kernel-log");
    std::fs::create_dir(&with_component).expect("mkdir");
    // kustomize takes only relative paths to other kustomizations.
    let to_root = "../".repeat(with_component.components().count() - 1);
    let relative = |p: PathBuf| {
        format!(
            "{to_root}{}",
            p.display().to_string().trim_start_matches('/')
        )
    };
    std::fs::write(
        with_component.join("kustomization.yaml"),
        format!(
            "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n\
             resources: [{}]\ncomponents: [{}]\n",
            relative(k8s.join("base")),
            relative(k8s.join("components/kernel-log"))
        ),
    )
    .expect("write the kustomization");

    for (name, source) in [
        ("base", k8s.join("base")),
        ("overlays/example", k8s.join("overlays/example")),
        ("base + components/kernel-log", with_component),
    ] {
        let rendered = kustomize(&source);
        let file = dir.path().join("rendered.yaml");
        std::fs::write(&file, &rendered).expect("write the rendered manifests");
        let docs = yaml_documents(&rendered);
        for version in KUBERNETES_VERSIONS {
            let output = kubernetes_validate(&file, version);
            assert!(
                output.status.success(),
                "{name} does not validate against Kubernetes {version}\n{}",
                describe(&output)
            );
            let report = stdout(&output);
            for doc in &docs {
                let resource = format!(
                    "passed for resource {}/{}",
                    doc["kind"].as_str().unwrap_or_default().to_lowercase(),
                    doc["metadata"]["name"].as_str().unwrap_or_default()
                );
                assert!(
                    report.contains(&resource),
                    "{name}: no '{resource}' in\n{report}"
                );
            }
        }
        check_objects(name, &docs);
    }

    // The schema check is strict: a misspelt field fails it.
    let rendered = kustomize(&k8s.join("base")).replace("hostPID: true", "hostPIDD: true");
    let file = dir.path().join("misspelt.yaml");
    std::fs::write(&file, rendered).expect("write");
    let output = kubernetes_validate(&file, KUBERNETES_VERSIONS[0]);
    assert!(!output.status.success(), "{}", describe(&output));
    assert!(
        stdout(&output).contains("'hostPIDD' was unexpected"),
        "{}",
        describe(&output)
    );
}

/// What the schema cannot say: least privilege, read-only host mounts, the
/// probes, the gateway, the config the ConfigMap carries.
fn check_objects(name: &str, docs: &[serde_json::Value]) {
    let kinds: Vec<&str> = docs.iter().filter_map(|d| d["kind"].as_str()).collect();
    for expected in ["Namespace", "ServiceAccount", "ConfigMap", "DaemonSet"] {
        assert!(
            kinds.contains(&expected),
            "{name}: no {expected} in {kinds:?}"
        );
    }
    assert!(
        !kinds.iter().any(|k| k.contains("Role")),
        "{name}: the agent needs no API rights: {kinds:?}"
    );
    assert_eq!(
        kind(docs, "ServiceAccount")["automountServiceAccountToken"],
        false
    );
    let pod = &kind(docs, "DaemonSet")["spec"]["template"]["spec"];
    assert_eq!(pod["hostPID"], true, "{name}");
    assert_eq!(pod["automountServiceAccountToken"], false, "{name}");
    assert_eq!(pod["priorityClassName"], "system-node-critical", "{name}");
    assert_eq!(
        pod["securityContext"]["seccompProfile"]["type"],
        "Localhost"
    );
    assert_eq!(
        pod["securityContext"]["seccompProfile"]["localhostProfile"],
        "oomscope.json"
    );
    let container = &pod["containers"][0];
    let security = &container["securityContext"];
    assert_eq!(security["capabilities"]["drop"], serde_json::json!(["ALL"]));
    assert_eq!(
        security["capabilities"]["add"],
        serde_json::json!(CAPABILITIES)
    );
    let privileged = name.contains("kernel-log");
    assert_eq!(security["privileged"], privileged, "{name}");
    assert_eq!(security["readOnlyRootFilesystem"], true, "{name}");
    for probe in ["livenessProbe", "readinessProbe"] {
        assert_eq!(
            container[probe]["httpGet"]["port"], "health",
            "{name} {probe}"
        );
    }
    assert!(
        container["resources"]["limits"]["memory"].is_string(),
        "{name}"
    );
    assert!(
        container["resources"]["requests"]["cpu"].is_string(),
        "{name}"
    );
    let env = container["env"].as_array().expect("env");
    assert!(
        env.iter().any(|e| e["name"] == "K8S_NODE_NAME"
            && e["valueFrom"]["fieldRef"]["fieldPath"] == "spec.nodeName"),
        "{name}: {env:?}"
    );
    if name == "base" {
        assert_eq!(
            pod["tolerations"],
            serde_json::json!([{"operator": "Exists"}])
        );
        assert!(env
            .iter()
            .any(|e| e["name"] == "OTEL_EXPORTER_OTLP_ENDPOINT"
                && e["value"] == "http://otel-gateway.observability.svc:4317"));
    }
    // Every host path read-only, except the state directory.
    let volumes = pod["volumes"].as_array().expect("volumes");
    let mounts = container["volumeMounts"].as_array().expect("volumeMounts");
    let mut host_paths = Vec::new();
    for volume in volumes.iter().filter(|v| v["hostPath"].is_object()) {
        let path = volume["hostPath"]["path"].as_str().expect("hostPath.path");
        host_paths.push(path);
        let mount = mounts
            .iter()
            .find(|m| m["name"] == volume["name"])
            .unwrap_or_else(|| panic!("{name}: volume {volume} is not mounted"));
        let read_only = mount["readOnly"] == true;
        assert_eq!(read_only, path != "/var/lib/oomscope", "{name}: {mount}");
    }
    for expected in [
        "/proc",
        "/sys",
        "/sys/kernel/tracing",
        "/dev/kmsg",
        "/var/log/pods",
        "/var/log/containers",
    ] {
        assert!(
            host_paths.contains(&expected),
            "{name}: no {expected} in {host_paths:?}"
        );
    }
    let config = kind(docs, "ConfigMap")["data"]["config.yaml"]
        .as_str()
        .expect("config.yaml in the ConfigMap");
    assert!(
        config.contains("${env:OTEL_EXPORTER_OTLP_ENDPOINT}"),
        "{name}"
    );
}

/// Runs a podman command with the options this machine needs (runc: crun
/// refuses hybrid cgroups; root lacks CAP_SYS_RESOURCE for podman's ulimits).
fn podman_run(image: &Image, options: &[&str], command: &[&str]) -> Output {
    Command::new("podman")
        .args(["--runtime", "runc", "run", "--rm"])
        .args([
            "--ulimit",
            "nofile=20000:20000",
            "--ulimit",
            "nproc=4096:4096",
        ])
        .args(options)
        .arg(&image.tag)
        .args(command)
        .output()
        .expect("run podman")
}

/// Removes a container (or, with `kube`, the pods of a kube file) when dropped.
enum PodmanGuard {
    Container(String),
    Kube(PathBuf),
}

impl Drop for PodmanGuard {
    fn drop(&mut self) {
        let mut cmd = Command::new("podman");
        match self {
            PodmanGuard::Container(name) => cmd.args(["rm", "--force", "--time", "10", name]),
            PodmanGuard::Kube(file) => cmd.args(["kube", "down"]).arg(file.as_path()),
        };
        let _ = cmd.stdout(Stdio::null()).stderr(Stdio::null()).status();
    }
}

fn container_logs(name: &str) -> String {
    let output = Command::new("podman")
        .args(["logs", name])
        .output()
        .expect("podman logs");
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

fn container_running(name: &str) -> bool {
    Command::new("podman")
        .args(["inspect", "--format", "{{.State.Running}}", name])
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "true")
}

/// Waits until `GET /` on 127.0.0.1:`port` answers 200 (the health_check
/// extension), while the container `name` runs.
fn wait_healthy(port: u16, name: &str) {
    use std::io::{Read as _, Write as _};
    let deadline = Instant::now() + TIMEOUT;
    loop {
        if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) {
            let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
            let _ = s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
            let mut answer = String::new();
            let _ = s.read_to_string(&mut answer);
            if answer.starts_with("HTTP/1.1 200") && answer.contains("Server available") {
                return;
            }
        }
        assert!(
            Instant::now() < deadline && container_running(name),
            "{name} not healthy on port {port} (running: {})\n{}",
            container_running(name),
            container_logs(name)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The agent's logs show the oom receiver watching, with eBPF loaded (under
/// the given capabilities and seccomp profile) unless this binary was built
/// without its eBPF object.
fn assert_oom_receiver_watching(name: &str) {
    let deadline = Instant::now() + TIMEOUT;
    let logs = loop {
        let logs = container_logs(name);
        if logs.contains("watching for OOM kills") {
            break logs;
        }
        assert!(Instant::now() < deadline, "{name}: no oom receiver\n{logs}");
        std::thread::sleep(Duration::from_millis(100));
    };
    if logs.contains("built without its eBPF object") {
        eprintln!("note: {name}: this oomscope was built with AYA_BUILD_SKIP; eBPF not checked");
        return;
    }
    assert!(
        logs.contains("ebpf=true") && logs.contains("kmsg=true"),
        "{name}: eBPF or /dev/kmsg unusable with {CAPABILITIES:?} and the seccomp profile\n{logs}"
    );
}

/// tracefs mounted on the host, as the agent mounts it when it runs there:
/// in a container it is bind-mounted from the host (no CAP_SYS_ADMIN).
fn ensure_tracefs() {
    if Path::new("/sys/kernel/tracing/events").is_dir() {
        return;
    }
    let _ = Command::new("mount")
        .args(["-t", "tracefs", "nodev", "/sys/kernel/tracing"])
        .status();
}

#[test]
fn container_image_builds_runs_and_plays_the_daemonset_pod() {
    const TEST: &str = "container_image_builds_runs_and_plays_the_daemonset_pod";
    if !is_root() {
        return skip(TEST, "needs root (podman, host mounts, eBPF)");
    }
    if !have("podman") {
        return skip(
            TEST,
            "podman is not installed (scripts/setup.sh installs it as root)",
        );
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let context = dir.path().join("context");
    let image = Image::build(&context, "deploy");

    // No shell, and the binary runs from its own libraries.
    let version = podman_run(&image, &[], &["--version"]);
    assert_eq!(
        stdout(&version),
        format!("oomscope {}\n", env!("CARGO_PKG_VERSION")),
        "{}",
        describe(&version)
    );
    let shell = podman_run(&image, &["--entrypoint", "/bin/sh"], &["-c", "true"]);
    assert!(
        !shell.status.success(),
        "the image has a shell\n{}",
        describe(&shell)
    );
    let validate = podman_run(
        &image,
        &[],
        &["validate", "--config", "/etc/oomscope/config.yaml"],
    );
    assert_eq!(
        stdout(&validate),
        "configuration is valid\n",
        "{}",
        describe(&validate)
    );

    ensure_tracefs();
    let seccomp = repo_root().join("deploy/kubernetes/seccomp/oomscope.json");
    run_container(&image, dir.path());
    match kustomize_missing() {
        None => play_daemonset_pod(&image, dir.path(), &seccomp),
        Some(why) => skip(TEST, format!("the DaemonSet's pod was not played: {why}")),
    }
}

/// The agent from the image with the DaemonSet's mounts, capabilities and
/// seccomp profile, its built-in config: healthy, eBPF loaded.
fn run_container(image: &Image, dir: &Path) {
    let name = format!("oomscope-test-{}", std::process::id());
    let pod = pod_options(&daemonset_pod_spec(), dir, SeccompChoice::Profile);
    assert_eq!(pod.caps_added, CAPABILITIES, "the DaemonSet's capabilities");
    let state = dir.join("state");
    std::fs::create_dir_all(&state).expect("mkdir state");
    let health = free_port();
    let guard = PodmanGuard::Container(name.clone());
    let publish = format!("127.0.0.1:{health}:13133");
    let output = Command::new("podman")
        .args(["--runtime", "runc", "run", "--detach", "--name", &name])
        .args(&pod.args)
        .args(["--publish", &publish])
        .arg(&image.tag)
        .output()
        .expect("podman run");
    assert!(output.status.success(), "{}", describe(&output));
    wait_healthy(health, &name);
    assert_oom_receiver_watching(&name);
    // file_storage on the volume.
    let state_dir = state.join("state");
    assert!(state_dir.is_dir(), "no {}", state_dir.display());
    drop(guard);
}

/// What the test changes in the DaemonSet's pod template for `podman kube
/// play` (podman 4.3 plays Pods and Deployments, not DaemonSets):
/// - `spec.nodeName` fieldRefs are refused: K8S_NODE_NAME gets a literal;
/// - `securityContext.seccompProfile` is ignored: the same Localhost profile
///   is given by the annotation podman reads;
/// - every containerPort is published on the host: hostPorts are set to
///   free ports;
/// - the state hostPath moves to the test's directory, the image to the
///   one built here;
/// - the probes become podman healthchecks that need systemd timers (absent
///   here; podman logs it and runs on), and `priorityClassName`,
///   `tolerations`, `nodeSelector` have no meaning on one host.
///
/// A `CharDevice` hostPath becomes a device, so /dev/kmsg opens (on
/// containerd and CRI-O it does not without privileged: see the README).
const POD_FROM_TEMPLATE: &str = r#"
import json, sys, yaml
docs = list(yaml.safe_load_all(sys.stdin))
args = json.loads(sys.argv[1])
ds = next(d for d in docs if d["kind"] == "DaemonSet")
cm = next(d for d in docs if d["kind"] == "ConfigMap")
cm["metadata"].pop("namespace", None)
template = ds["spec"]["template"]
pod = {"apiVersion": "v1", "kind": "Pod",
       "metadata": {"name": args["name"], "labels": template["metadata"]["labels"],
                    "annotations": {"seccomp.security.alpha.kubernetes.io/pod":
                                    "localhost/" + template["spec"]["securityContext"]["seccompProfile"]["localhostProfile"]}},
       "spec": template["spec"]}
container = pod["spec"]["containers"][0]
container["image"] = args["image"]
for env in container["env"]:
    if env.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") == "spec.nodeName":
        env.pop("valueFrom")
        env["value"] = args["node"]
for port in container["ports"]:
    port["hostPort"] = args["ports"][port["name"]]
for volume in pod["spec"]["volumes"]:
    if volume.get("hostPath", {}).get("path") == "/var/lib/oomscope":
        volume["hostPath"]["path"] = args["state"]
yaml.safe_dump_all([cm, pod], sys.stdout)
"#;

fn play_daemonset_pod(image: &Image, dir: &Path, seccomp: &Path) {
    use std::io::Write as _;
    let name = format!("oomscope-test-pod-{}", std::process::id());
    let state = dir.join("pod-state");
    std::fs::create_dir(&state).expect("mkdir");
    let seccomp_root = dir.join("seccomp");
    std::fs::create_dir(&seccomp_root).expect("mkdir");
    std::fs::copy(seccomp, seccomp_root.join("oomscope.json")).expect("copy the profile");
    // kube play has no --ulimit/--runtime: containers.conf gives them.
    let containers_conf = dir.join("containers.conf");
    std::fs::write(
        &containers_conf,
        "[containers]\ndefault_ulimits = [\"nofile=20000:20000\", \"nproc=4096:4096\"]\n\
         [engine]\nruntime = \"runc\"\n",
    )
    .expect("write containers.conf");
    let (health, metrics) = (free_port(), free_port());
    let args = serde_json::json!({
        "name": name, "image": image.tag, "node": "test-node",
        "ports": {"health": health, "metrics": metrics},
        "state": state.display().to_string(),
    });
    let rendered = kustomize(&repo_root().join("deploy/kubernetes/base"));
    let mut child = Command::new(venv_python())
        .args(["-c", POD_FROM_TEMPLATE, &args.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run python");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(rendered.as_bytes())
        .expect("write");
    let output = child.wait_with_output().expect("python");
    assert!(output.status.success(), "{}", describe(&output));
    let kube_file = dir.join("pod.yaml");
    std::fs::write(&kube_file, &output.stdout).expect("write the pod");

    let guard = PodmanGuard::Kube(kube_file.clone());
    run_ok(
        Command::new("podman")
            .env("CONTAINERS_CONF", &containers_conf)
            .args(["kube", "play", "--seccomp-profile-root"])
            .arg(&seccomp_root)
            .arg(&kube_file),
    );
    let container = format!("{name}-oomscope");
    wait_healthy(health, &container);
    assert_oom_receiver_watching(&container);
    let inspect = stdout(&run_ok(Command::new("podman").args([
        "inspect",
        "--format",
        "{{.HostConfig.Privileged}} {{.HostConfig.CapAdd}}",
        &container,
    ])));
    let expected_caps: Vec<String> = CAPABILITIES.iter().map(|c| format!("CAP_{c}")).collect();
    assert_eq!(
        inspect.trim(),
        format!("false [{}]", expected_caps.join(" ")),
        "the pod runs unprivileged with exactly these capabilities"
    );
    drop(guard);
}

/// `systemd-analyze verify` on a copy of `unit` whose ExecStart runs `binary`
/// (verify checks that the command exists); returns its output.
fn systemd_verify(unit_text: &str, binary: &Path, dir: &Path) -> Output {
    let unit = dir.join("oomscope.service");
    std::fs::write(
        &unit,
        unit_text.replace(
            "ExecStart=/usr/bin/oomscope",
            &format!("ExecStart={}", binary.display()),
        ),
    )
    .expect("write the unit");
    Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(&unit)
        .output()
        .expect("run systemd-analyze")
}

#[test]
fn systemd_unit_verifies() {
    const TEST: &str = "systemd_unit_verifies";
    if !have("systemd-analyze") {
        return skip(TEST, "systemd-analyze is not installed");
    }
    let unit = std::fs::read_to_string(repo_root().join("deploy/systemd/oomscope.service"))
        .expect("read the unit");
    for line in [
        "User=oomscope",
        "ExecStart=/usr/bin/oomscope --config /etc/oomscope/config.yaml",
        "AmbientCapabilities=CAP_BPF CAP_PERFMON CAP_SYSLOG CAP_DAC_READ_SEARCH CAP_SYS_PTRACE",
        "CapabilityBoundingSet=CAP_BPF CAP_PERFMON CAP_SYSLOG CAP_DAC_READ_SEARCH CAP_SYS_PTRACE",
        "ProtectSystem=strict",
        "ReadWritePaths=/var/lib/oomscope",
        "StateDirectory=oomscope",
        "NoNewPrivileges=yes",
        "PrivateTmp=yes",
        "ProtectHome=yes",
        "ProtectKernelModules=yes",
        "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX",
        "SystemCallFilter=@system-service bpf perf_event_open",
        "OOMScoreAdjust=-900",
        "Restart=on-failure",
        "MemoryMax=512M",
    ] {
        assert!(unit.lines().any(|l| l == line), "the unit lacks {line:?}");
    }
    // It would hide /dev/kmsg from the agent.
    assert!(!unit.contains("ProtectKernelLogs=yes"));
    let dir = tempfile::tempdir().expect("tempdir");
    let binary = Path::new(env!("CARGO_BIN_EXE_oomscope"));
    let output = systemd_verify(&unit, binary, dir.path());
    assert!(output.status.success(), "{}", describe(&output));
    // Unknown keys are only warnings: there must be none.
    assert!(
        output.stdout.is_empty() && output.stderr.is_empty(),
        "{}",
        describe(&output)
    );
    // The check catches a misspelt key.
    let output = systemd_verify(
        &unit.replace("ProtectClock=yes", "ProtectClok=yes"),
        binary,
        dir.path(),
    );
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("Unknown key 'ProtectClok'"),
        "{}",
        describe(&output)
    );
}

/// Purges the package (and removes the user, when this test created it)
/// when dropped.
struct InstalledPackage {
    created_user: bool,
}

impl InstalledPackage {
    fn purge(&self) -> Output {
        let output = Command::new("dpkg")
            .args(["--purge", "oomscope"])
            .output()
            .expect("dpkg --purge");
        if self.created_user {
            let _ = Command::new("userdel").arg("oomscope").output();
            let _ = Command::new("groupdel").arg("oomscope").output();
        }
        output
    }
}

impl Drop for InstalledPackage {
    fn drop(&mut self) {
        let _ = self.purge();
    }
}

fn getent(database: &str, key: &str) -> Option<String> {
    let output = Command::new("getent").args([database, key]).output().ok()?;
    output.status.success().then(|| stdout(&output))
}

#[test]
fn deb_package_installs_checks_out_and_purges() {
    use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
    const TEST: &str = "deb_package_installs_checks_out_and_purges";
    if !is_root() {
        return skip(TEST, "needs root (dpkg -i)");
    }
    if !have("dpkg") || !have("dpkg-deb") {
        return skip(TEST, "dpkg is not installed (not a Debian-family host)");
    }
    let _lock = machine_lock("dpkg-oomscope", LockMode::Exclusive);
    let installed = Command::new("dpkg-query")
        .args(["--show", "--showformat", "${db:Status-Status}", "oomscope"])
        .output()
        .is_ok_and(|o| o.status.success() && stdout(&o) != "not-installed");
    if installed {
        return skip(
            TEST,
            "an oomscope package is installed on this host; not replacing it",
        );
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let output = run_ok(
        Command::new(repo_root().join("scripts/package-deb.sh"))
            .arg(env!("CARGO_BIN_EXE_oomscope"))
            .arg(dir.path()),
    );
    let deb = PathBuf::from(stdout(&output).trim());
    assert_eq!(
        deb.file_name().and_then(|n| n.to_str()),
        Some(format!("oomscope_{}_amd64.deb", env!("CARGO_PKG_VERSION")).as_str())
    );

    let package = InstalledPackage {
        created_user: getent("passwd", "oomscope").is_none(),
    };
    run_ok(Command::new("dpkg").arg("-i").arg(&deb));

    for (path, mode) in [
        ("/usr/bin/oomscope", 0o755),
        ("/lib/systemd/system/oomscope.service", 0o644),
        ("/usr/lib/sysusers.d/oomscope.conf", 0o644),
        ("/etc/oomscope/config.yaml", 0o644),
    ] {
        let meta = std::fs::metadata(path).unwrap_or_else(|e| panic!("{path}: {e}"));
        assert_eq!(meta.permissions().mode() & 0o7777, mode, "{path}");
    }
    let conffiles = stdout(&run_ok(Command::new("dpkg-query").args([
        "--showformat",
        "${Conffiles}",
        "--show",
        "oomscope",
    ])));
    assert!(
        conffiles.contains("/etc/oomscope/config.yaml"),
        "{conffiles}"
    );
    let user = getent("passwd", "oomscope").expect("postinst created the user oomscope");
    let fields: Vec<&str> = user.trim().split(':').collect();
    assert_eq!(fields.get(5), Some(&"/var/lib/oomscope"), "{user}");
    assert!(
        fields.get(6).is_some_and(|s| s.ends_with("nologin")),
        "{user}"
    );
    let uid: u32 = fields[2].parse().expect("uid");
    let state = std::fs::metadata("/var/lib/oomscope").expect("/var/lib/oomscope");
    assert_eq!(
        (state.uid(), state.permissions().mode() & 0o7777),
        (uid, 0o700)
    );

    let version = run_ok(Command::new("/usr/bin/oomscope").arg("--version"));
    assert_eq!(
        stdout(&version),
        format!("oomscope {}\n", env!("CARGO_PKG_VERSION"))
    );
    let validate = run_ok(Command::new("/usr/bin/oomscope").args([
        "validate",
        "--config",
        "/etc/oomscope/config.yaml",
    ]));
    assert_eq!(stdout(&validate), "configuration is valid\n");
    let verify = run_ok(Command::new("systemd-analyze").args([
        "verify",
        "--man=no",
        "/lib/systemd/system/oomscope.service",
    ]));
    assert!(
        verify.stdout.is_empty() && verify.stderr.is_empty(),
        "{}",
        describe(&verify)
    );

    let purge = package.purge();
    assert!(purge.status.success(), "{}", describe(&purge));
    for path in ["/usr/bin/oomscope", "/etc/oomscope", "/var/lib/oomscope"] {
        assert!(!Path::new(path).exists(), "{path} is left after purge");
    }
}
