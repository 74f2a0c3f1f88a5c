//! Workload identity with a real container runtime: podman (Debian's, with
//! runc) runs a container from an image built here from local files
//! (`FROM scratch`, busybox-static and a static allocator), and the agent on
//! the host reports it with the container's id, name, runtime and image on
//! the resource: an OOM kill in a memory-limited container (`oom` receiver,
//! the real eBPF build), and the cgroup metrics of a running container
//! (`memory` receiver). Needs root and podman; skips with a printed reason
//! where the host lacks them.

mod common;

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::Mutex;
use std::time::Duration;

use common::oom::oom_test_slot_blocking;
use common::oomscope::Oomscope;
use common::otlp::{attr_str, json_attr};
use common::{free_port, is_root, skip};

const TIMEOUT: Duration = Duration::from_secs(90);
/// The test image, built once per test binary (idempotent name and tag).
const IMAGE_NAME: &str = "localhost/oomscope-test-alloc";
const IMAGE_TAG: &str = "1.0";

/// Allocates 1 MiB blocks and touches every page, at most 1 GiB, but only
/// after it has read a memory limit of at most 256 MiB on its own cgroup
/// (v1 or v2): without one it allocates nothing.
const ALLOCATOR_C: &str = r#"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
static long long limit(void) {
    const char *files[] = {"/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"};
    for (int i = 0; i < 2; i++) {
        FILE *f = fopen(files[i], "r");
        long long v = -1;
        if (!f) continue;
        if (fscanf(f, "%lld", &v) != 1) v = -1;
        fclose(f);
        return v;
    }
    return -1;
}
int main(void) {
    long long l = limit();
    if (l <= 0 || l > 256LL << 20) {
        fprintf(stderr, "no memory limit of at most 256 MiB (%lld): not allocating\n", l);
        return 2;
    }
    for (int i = 0; i < 1024; i++) {
        char *p = malloc(1 << 20);
        if (!p) return 3;
        memset(p, 1, 1 << 20);
    }
    fprintf(stderr, "allocated 1 GiB without being OOM-killed\n");
    return 4;
}
"#;

fn podman(args: &[&str]) -> Output {
    Command::new("podman")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run podman")
}

fn podman_ok(args: &[&str]) -> String {
    let out = podman(args);
    assert!(
        out.status.success(),
        "podman {args:?}: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Why the host cannot run these tests, if it cannot.
fn unsupported() -> Option<String> {
    if !is_root() {
        return Some("needs root (podman as root, eBPF, memory cgroups)".into());
    }
    match Command::new("podman").arg("--version").output() {
        Ok(o) if o.status.success() => None,
        _ => Some("podman is not installed (scripts/setup.sh installs it)".into()),
    }
}

/// Test binaries using the image; the last one out removes it.
static IMAGE_USERS: Mutex<usize> = Mutex::new(0);

/// The test image, built for this binary's tests; removed (`podman rmi`)
/// when the last holder drops it.
struct TestImage;

impl TestImage {
    fn get() -> TestImage {
        let mut users = IMAGE_USERS.lock().unwrap_or_else(|e| e.into_inner());
        if *users == 0 {
            build_image();
        }
        *users += 1;
        TestImage
    }

    fn reference() -> String {
        format!("{IMAGE_NAME}:{IMAGE_TAG}")
    }
}

impl Drop for TestImage {
    fn drop(&mut self) {
        let mut users = IMAGE_USERS.lock().unwrap_or_else(|e| e.into_inner());
        *users -= 1;
        if *users == 0 {
            let _ = podman(&["rmi", "-f", &TestImage::reference()]);
        }
    }
}

fn build_image() {
    let dir = tempfile::tempdir().expect("tempdir");
    let src = dir.path().join("alloc.c");
    std::fs::write(&src, ALLOCATOR_C).expect("write the allocator");
    let status = Command::new("gcc")
        .args(["-static", "-O1", "-o"])
        .arg(dir.path().join("alloc"))
        .arg(&src)
        .status()
        .expect("run gcc");
    assert!(status.success(), "gcc -static failed");
    let busybox = ["/bin/busybox", "/usr/bin/busybox"]
        .into_iter()
        .find(|p| Path::new(p).is_file())
        .expect("busybox-static (scripts/setup.sh installs it)");
    std::fs::copy(busybox, dir.path().join("busybox")).expect("copy busybox");
    std::fs::write(
        dir.path().join("Containerfile"),
        "FROM scratch\nCOPY busybox /bin/busybox\nCOPY busybox /bin/sh\nCOPY busybox /bin/sleep\nCOPY alloc /alloc\nCMD [\"/alloc\"]\n",
    )
    .expect("Containerfile");
    let context = dir.path().to_string_lossy().into_owned();
    podman_ok(&[
        "build",
        "--runtime",
        "runc",
        "-t",
        &TestImage::reference(),
        &context,
    ]);
}

/// A container, removed (`podman rm -f`) on drop.
struct Container {
    name: String,
    /// conmon's working directory (podman's), where conmon writes a file
    /// named `oom` when the container is OOM-killed: not the test's.
    cwd: tempfile::TempDir,
}

impl Container {
    fn name(test: &str) -> Container {
        Container {
            name: format!("oomscope-test-{test}-{}", std::process::id()),
            cwd: tempfile::tempdir().expect("tempdir"),
        }
    }

    /// `podman run -d` of the test image with a 64 MiB limit and this
    /// machine's settings; returns the full id.
    fn run(&self, command: &[&str]) -> String {
        let _ = podman(&["rm", "-f", &self.name]);
        let image = TestImage::reference();
        let mut args = vec![
            "run",
            "-d",
            "--name",
            &self.name,
            "--runtime",
            "runc",
            "--ulimit",
            "nofile=20000:20000",
            "--ulimit",
            "nproc=4096:4096",
            "--memory",
            "64m",
            "--memory-swap",
            "64m",
            &image,
        ];
        args.extend_from_slice(command);
        let out = Command::new("podman")
            .args(&args)
            .current_dir(self.cwd.path())
            .stdin(Stdio::null())
            .output()
            .expect("run podman");
        assert!(
            out.status.success(),
            "podman {args:?}: {}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    fn inspect(&self, format: &str) -> String {
        podman_ok(&["inspect", "-f", format, &self.name])
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        let _ = podman(&["rm", "-f", "-t", "0", &self.name]);
    }
}

/// Each resource's attributes (JSON) with its log records or its metric
/// points (name, point), from the file exporter's lines.
struct Exported {
    logs: Vec<(serde_json::Value, serde_json::Value)>,
    points: Vec<(serde_json::Value, String, serde_json::Value)>,
}

fn read_exported(path: &Path) -> Exported {
    let mut out = Exported {
        logs: Vec::new(),
        points: Vec::new(),
    };
    let text = std::fs::read_to_string(path).unwrap_or_default();
    for line in text.lines() {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
            break;
        };
        for rl in v["resourceLogs"].as_array().into_iter().flatten() {
            let attrs = rl["resource"]["attributes"].clone();
            for sl in rl["scopeLogs"].as_array().into_iter().flatten() {
                for lr in sl["logRecords"].as_array().into_iter().flatten() {
                    out.logs.push((attrs.clone(), lr.clone()));
                }
            }
        }
        for rm in v["resourceMetrics"].as_array().into_iter().flatten() {
            let attrs = rm["resource"]["attributes"].clone();
            for sm in rm["scopeMetrics"].as_array().into_iter().flatten() {
                for m in sm["metrics"].as_array().into_iter().flatten() {
                    let name = m["name"].as_str().unwrap_or_default().to_string();
                    for kind in ["sum", "gauge"] {
                        for p in m[kind]["dataPoints"].as_array().into_iter().flatten() {
                            out.points.push((attrs.clone(), name.clone(), p.clone()));
                        }
                    }
                }
            }
        }
    }
    out
}

fn wait_exported(path: &Path, done: impl Fn(&Exported) -> bool) -> Exported {
    let deadline = std::time::Instant::now() + TIMEOUT;
    loop {
        let e = read_exported(path);
        if done(&e) || std::time::Instant::now() >= deadline {
            return e;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn resource_str(attrs: &serde_json::Value, key: &str) -> Option<String> {
    json_attr(attrs, key)?["stringValue"]
        .as_str()
        .map(str::to_string)
}

fn resource_tags(attrs: &serde_json::Value) -> Option<Vec<String>> {
    let values = json_attr(attrs, "container.image.tags")?["arrayValue"]["values"].as_array()?;
    values
        .iter()
        .map(|v| v["stringValue"].as_str().map(str::to_string))
        .collect()
}

fn start_agent(out: &Path, receivers: &str, pipeline: &str) -> Oomscope {
    let health = free_port();
    let config = format!(
        r#"
receivers:
{receivers}
processors:
  batch: {{ timeout: 1s }}
exporters:
  file: {{ path: "{out}" }}
extensions:
  health_check: {{ endpoint: "127.0.0.1:{health}" }}
service:
  extensions: [health_check]
  telemetry: {{ metrics: {{ address: "" }} }}
  oom_score_adj: null
  pipelines:
{pipeline}
"#,
        out = out.display()
    );
    let mut agent = Oomscope::start(&config, &[]);
    agent.wait_healthy(health, TIMEOUT);
    agent
}

/// A container OOM-killed at its 64 MiB limit: one record, whose resource
/// names the container (full id, the `--name` given, podman, the image and
/// its tag).
#[test]
fn a_container_oom_kill_names_the_container_on_the_resource() {
    if let Some(why) = unsupported() {
        skip(
            "a_container_oom_kill_names_the_container_on_the_resource",
            why,
        );
        return;
    }
    let image = TestImage::get();
    let _slot = oom_test_slot_blocking();
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("out.jsonl");
    let events = free_port();
    let mut agent = start_agent(
        &out,
        &format!(
            "  oom:\n    events: {{ endpoint: \"127.0.0.1:{events}\" }}\n    cgroups: {{ include: [\"/libpod_parent/**\", \"/machine.slice/**\"] }}\n"
        ),
        "    logs: { receivers: [oom], processors: [batch], exporters: [file] }",
    );
    let container = Container::name("oom");
    let id = container.run(&["/alloc"]);
    let exit_code = podman_ok(&["wait", &container.name]);
    assert_eq!(
        exit_code,
        "137",
        "the allocator was not OOM-killed: {}",
        podman_ok(&["logs", &container.name])
    );
    let got = wait_exported(&out, |e| {
        e.logs.iter().any(|(r, rec)| {
            rec["eventName"] == "linux.oom.kill"
                && resource_str(r, "container.id").as_deref() == Some(id.as_str())
        })
    });
    let records: Vec<&(serde_json::Value, serde_json::Value)> = got
        .logs
        .iter()
        .filter(|(r, rec)| {
            rec["eventName"] == "linux.oom.kill"
                && resource_str(r, "container.id").as_deref() == Some(id.as_str())
        })
        .collect();
    assert_eq!(
        records.len(),
        1,
        "exactly one kill record for container {id}: {:#?}\nthe agent said:\n{}",
        got.logs,
        agent.output()
    );
    let (resource, record) = records[0];
    assert_eq!(
        resource_str(resource, "container.name").as_deref(),
        Some(container.name.as_str()),
        "{resource:#}"
    );
    assert_eq!(
        resource_str(resource, "container.runtime.name").as_deref(),
        Some("podman")
    );
    assert_eq!(
        resource_str(resource, "container.image.name").as_deref(),
        Some(IMAGE_NAME)
    );
    assert_eq!(resource_tags(resource), Some(vec![IMAGE_TAG.to_string()]));
    assert_eq!(
        resource_str(resource, "k8s.node.name"),
        None,
        "not Kubernetes"
    );
    // On the record: the kill, not the container.
    assert_eq!(attr_str(record, "container.id"), None);
    assert_eq!(
        attr_str(record, "oom.victim.cgroup").as_deref(),
        Some(format!("/libpod_parent/libpod-{id}").as_str())
    );
    assert_eq!(
        attr_str(record, "oom.victim.comm").as_deref(),
        Some("alloc")
    );
    let (status, clean) = agent.stop(Duration::from_secs(10));
    assert!(clean && status.success(), "{status:?}\n{}", agent.output());
    drop(container);
    drop(image);
}

/// The cgroup metrics of a running named container: their resource is the
/// container (name, image), its points carry only the cgroup path.
#[test]
fn a_running_container_is_the_resource_of_its_cgroup_metrics() {
    if let Some(why) = unsupported() {
        skip(
            "a_running_container_is_the_resource_of_its_cgroup_metrics",
            why,
        );
        return;
    }
    let image = TestImage::get();
    let container = Container::name("mem");
    let id = container.run(&["/bin/sleep", "600"]);
    assert_eq!(container.inspect("{{.State.Running}}"), "true");
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("out.jsonl");
    let mut agent = start_agent(
        &out,
        "  memory:\n    collection_interval: 1s\n    initial_delay: 0s\n    system: { enabled: false }\n    pressure: { enabled: false }\n    processes: { enabled: false }\n    cgroups: { include: [\"/libpod_parent/**\", \"/machine.slice/**\"] }\n",
        "    metrics: { receivers: [memory], processors: [batch], exporters: [file] }",
    );
    let got = wait_exported(&out, |e| {
        e.points.iter().any(|(r, name, _)| {
            name == "cgroup.memory.limit"
                && resource_str(r, "container.id").as_deref() == Some(id.as_str())
        })
    });
    let limit = got
        .points
        .iter()
        .find(|(r, name, _)| {
            name == "cgroup.memory.limit"
                && resource_str(r, "container.id").as_deref() == Some(id.as_str())
        })
        .unwrap_or_else(|| {
            panic!(
                "no cgroup.memory.limit with the container's resource; the agent said:\n{}",
                agent.output()
            )
        });
    let (resource, _, point) = limit;
    assert_eq!(
        resource_str(resource, "container.name").as_deref(),
        Some(container.name.as_str()),
        "{resource:#}"
    );
    assert_eq!(
        resource_str(resource, "container.runtime.name").as_deref(),
        Some("podman")
    );
    assert_eq!(
        resource_str(resource, "container.image.name").as_deref(),
        Some(IMAGE_NAME)
    );
    assert_eq!(resource_tags(resource), Some(vec![IMAGE_TAG.to_string()]));
    assert_eq!(
        common::otlp::point_int(point),
        Some(64 << 20),
        "the container's limit"
    );
    assert_eq!(json_attr(&point["attributes"], "container.id"), None);
    let (status, clean) = agent.stop(Duration::from_secs(10));
    assert!(clean && status.success(), "{status:?}\n{}", agent.output());
    drop(container);
    drop(image);
}
