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
use std::time::Duration;

use common::oom::oom_test_slot_blocking;
use common::oomscope::Oomscope;
use common::otlp::{attr_str, json_attr};
use common::podman::{
    assert_alloc_container_resource, podman, resource_str, AllocImage as TestImage, Container,
};
use common::{free_port, skip};

const TIMEOUT: Duration = Duration::from_secs(90);
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
    if let Some(why) = common::podman::unavailable() {
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
    let container = Container::named(&format!("oomscope-test-oom-{}", std::process::id()));
    let id = container.run_limited(TestImage::reference(), "64m", &["/alloc"]);
    let exit_code = podman(&["wait", &container.name]);
    assert_eq!(
        exit_code,
        "137",
        "the allocator was not OOM-killed: {}",
        container.logs()
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
    assert_alloc_container_resource(resource, &container.name, &id);
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
/// container (name, image), its points carry only the cgroup path; the
/// figures the registry names for containers have those names, so a
/// dashboard's "container memory by `container.id`" query
/// (`sum by (container.id) (container.memory.usage)`, kubeletstats' and
/// cAdvisor's shape) finds the container.
#[test]
fn a_running_container_is_the_resource_of_its_cgroup_metrics() {
    if let Some(why) = common::podman::unavailable() {
        skip(
            "a_running_container_is_the_resource_of_its_cgroup_metrics",
            why,
        );
        return;
    }
    let image = TestImage::get();
    let container = Container::named(&format!("oomscope-test-mem-{}", std::process::id()));
    let id = container.run_limited(TestImage::reference(), "64m", &["/bin/sleep", "600"]);
    assert_eq!(
        podman(&["inspect", "-f", "{{.State.Running}}", &container.name]),
        "true"
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("out.jsonl");
    let mut agent = start_agent(
        &out,
        "  memory:\n    collection_interval: 1s\n    initial_delay: 0s\n    system: { enabled: false }\n    pressure: { enabled: false }\n    processes: { enabled: false }\n    cgroups: { include: [\"/libpod_parent/**\", \"/machine.slice/**\"] }\n",
        "    metrics: { receivers: [memory], processors: [batch], exporters: [file] }",
    );
    let of_container = |e: &Exported,
                        metric: &str|
     -> Vec<(serde_json::Value, serde_json::Value)> {
        e.points
            .iter()
            .filter(|(r, name, _)| {
                name == metric && resource_str(r, "container.id").as_deref() == Some(id.as_str())
            })
            .map(|(r, _, p)| (r.clone(), p.clone()))
            .collect()
    };
    let got = wait_exported(&out, |e| {
        !of_container(e, "oomscope.cgroup.memory.limit").is_empty()
            && !of_container(e, "container.memory.available").is_empty()
    });
    let limit = of_container(&got, "oomscope.cgroup.memory.limit");
    let Some((resource, point)) = limit.first() else {
        panic!(
            "no oomscope.cgroup.memory.limit with the container's resource; the agent said:\n{}",
            agent.output()
        )
    };
    assert_alloc_container_resource(resource, &container.name, &id);
    assert_eq!(
        common::otlp::point_int(point),
        Some(64 << 20),
        "the container's limit"
    );
    assert_eq!(json_attr(&point["attributes"], "container.id"), None);

    // The dashboard query: container.memory.usage grouped by the resource's
    // container.id has this container, under its limit; the registry's
    // working set and available agree with each other at each scrape.
    let usage = of_container(&got, "container.memory.usage");
    assert!(!usage.is_empty(), "no container.memory.usage for {id}");
    for (_, p) in &usage {
        let v = common::otlp::point_int(p).expect("int usage");
        assert!(v > 0 && v <= 64 << 20, "usage {v}");
    }
    assert!(
        of_container(&got, "oomscope.cgroup.memory.usage").is_empty(),
        "one name per figure: the container's usage is container.memory.usage"
    );
    let at = |metric: &str| -> std::collections::BTreeMap<String, i64> {
        of_container(&got, metric)
            .iter()
            .filter_map(|(_, p)| {
                Some((
                    p["timeUnixNano"].as_str()?.to_string(),
                    common::otlp::point_int(p)?,
                ))
            })
            .collect()
    };
    let working_set = at("container.memory.working_set");
    let available = at("container.memory.available");
    assert!(!available.is_empty(), "no container.memory.available");
    for (time, a) in &available {
        let ws = working_set
            .get(time)
            .unwrap_or_else(|| panic!("no working set at {time}"));
        assert_eq!(
            *a,
            (64 << 20) - ws,
            "available = limit - working set at {time}"
        );
    }
    assert!(
        !at("container.memory.rss").is_empty(),
        "no container.memory.rss"
    );
    let (status, clean) = agent.stop(Duration::from_secs(10));
    assert!(clean && status.success(), "{status:?}\n{}", agent.output());
    drop(container);
    drop(image);
}

/// Containers whose conmon no scan ever saw running (as after a kill so
/// fast that the conmon exited before the agent looked): their identity
/// comes from podman's real storage on disk, found under the host's
/// configured storage roots: the bundle of one that ran and exited, the
/// containers.json entry of one only created.
#[test]
fn containers_no_scan_saw_running_are_found_in_podmans_storage() {
    if let Some(why) = common::podman::unavailable() {
        skip(
            "containers_no_scan_saw_running_are_found_in_podmans_storage",
            why,
        );
        return;
    }
    let image = TestImage::get();
    let pid = std::process::id();
    let exited = Container::named(&format!("oomscope-test-exited-{pid}"));
    let mut run = vec!["run", "-d", "--name", &exited.name];
    run.extend(common::podman::run_args());
    run.extend([TestImage::reference(), "/bin/sh", "-c", "exit 0"]);
    let exited_id = podman(&run);
    assert_eq!(podman(&["wait", &exited.name]), "0");
    // Its conmon outlives the container briefly: wait until it is gone.
    let deadline = std::time::Instant::now() + TIMEOUT;
    while conmon_of(&exited_id).is_some() {
        assert!(
            std::time::Instant::now() < deadline,
            "conmon of {exited_id} still running"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let created = Container::named(&format!("oomscope-test-created-{pid}"));
    let created_id = podman(&[
        "create",
        "--name",
        &created.name,
        TestImage::reference(),
        "/alloc",
    ]);
    let mut resolver = oomscope::workload::Resolver::new(
        &oomscope::workload::WorkloadConfig::default(),
        Path::new("/proc"),
        Path::new("/"),
    );
    resolver.refresh();
    for (container, id) in [(&exited, &exited_id), (&created, &created_id)] {
        let w = resolver
            .resolve(&format!("/libpod_parent/libpod-{id}"), None)
            .expect("a container id in the path");
        assert_eq!(w.container_id.as_deref(), Some(id.as_str()));
        assert_eq!(
            w.container_name.as_deref(),
            Some(container.name.as_str()),
            "{w:?}"
        );
        assert_eq!(w.runtime, Some("podman"), "{w:?}");
        assert_eq!(
            w.image_name.as_deref(),
            Some(common::podman::ALLOC_IMAGE_NAME),
            "{w:?}"
        );
        assert_eq!(w.image_tags, [common::podman::ALLOC_IMAGE_TAG], "{w:?}");
    }
    drop((exited, created));
    drop(image);
}

/// The pid of the conmon of container `id`, if one runs.
fn conmon_of(id: &str) -> Option<u32> {
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
        let pid: u32 = e.file_name().to_str()?.parse().ok()?;
        let comm = std::fs::read_to_string(e.path().join("comm")).ok()?;
        let cmdline = std::fs::read(e.path().join("cmdline")).ok()?;
        (comm.trim_end() == "conmon" && cmdline.split(|b| *b == 0).any(|arg| arg == id.as_bytes()))
            .then_some(pid)
    })
}
