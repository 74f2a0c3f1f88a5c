//! The agent as Kubernetes runs it: its image (the repository's
//! Containerfile), started with exactly the DaemonSet's host mounts,
//! capabilities, seccomp profile and read-only root (translated from
//! deploy/kubernetes/base/daemonset.yaml to podman options, not written
//! again here), catches an OOM kill in another container with a complete
//! record. Without the seccomp profile or a capability, the agent and
//! `oomscope doctor` say exactly which is missing.
//!
//! Needs root and podman (scripts/setup.sh installs podman, runc and
//! busybox-static); skips with a message otherwise.

mod common;

use std::{
    path::Path,
    time::{Duration, Instant},
};

use common::otlp::{attr_str, json_attr, FileContents};
use common::podman::{
    self, daemonset_pod_spec, pod_options, AgentImage, AllocImage, Container, PodOptions,
    SeccompChoice,
};
use serde_json::Value;

fn skip_reason() -> Option<String> {
    podman::unavailable()
}

/// A config dir standing in for the ConfigMap: the image's own container
/// config, plus a file exporter on a mounted directory the test reads.
fn config_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir_all(dir.path().join("state")).expect("state dir");
    std::fs::create_dir_all(dir.path().join("out")).expect("out dir");
    dir
}

/// Starts the agent container with `pod`'s options; its output goes to the
/// file exporter at `<config_dir>/out/records.json` (mounted at /out).
fn start_agent(image: &AgentImage, name: &str, pod: &PodOptions, config_dir: &Path) -> Container {
    let agent = Container::named(name);
    let mut args: Vec<String> = vec!["run".into(), "-d".into(), "--name".into(), name.into()];
    args.extend(pod.args.iter().cloned());
    args.push(format!(
        "--volume={}:/out",
        config_dir.join("out").display()
    ));
    args.push(image.tag.clone());
    args.extend(
        [
            "--config",
            "/etc/oomscope/config.yaml",
            "--config",
            "yaml:exporters: {file: {path: /out/records.json}}",
            "--set",
            "service::pipelines::logs::exporters=[file]",
            "--set",
            "service::pipelines::metrics::exporters=[file]",
        ]
        .map(String::from),
    );
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    podman::podman(&refs);
    agent
}

fn wait_for_log(container: &Container, needle: &str, timeout: Duration) -> String {
    let deadline = Instant::now() + timeout;
    loop {
        let logs = container.logs();
        if logs.contains(needle) {
            return logs;
        }
        assert!(
            Instant::now() < deadline,
            "container {} did not log {needle:?} in {timeout:?}:\n{logs}",
            container.name
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Runs the alloc image's `/alloc` limited to 64 MiB, OOM-killed; returns
/// the container (kept until the test ends, so its state is there to be
/// read) and its id.
fn run_victim(name: &str) -> (Container, String) {
    let victim = Container::named(name);
    let id = victim.run_limited(AllocImage::reference(), "64m", &["/alloc"]);
    let exit = podman::podman(&["wait", name]);
    assert_eq!(
        exit,
        "137",
        "the victim was not OOM-killed:\n{}",
        victim.logs()
    );
    (victim, id)
}

fn kill_record_for(contents: &FileContents, container_id: &str) -> Option<(Value, Value)> {
    contents
        .logs
        .iter()
        .zip(&contents.log_resources)
        .find(|(record, resource)| {
            record["eventName"] == "linux.oom.kill"
                && (attr_str(resource, "container.id").as_deref() == Some(container_id)
                    || attr_str(record, "container.id").as_deref() == Some(container_id))
        })
        .map(|(r, res)| (r.clone(), res.clone()))
}

#[test]
#[ignore = "needs root and podman; run with --include-ignored"]
fn the_agent_in_its_image_with_the_daemonsets_privileges_reports_a_kill_in_another_container() {
    if let Some(reason) = skip_reason() {
        println!("SKIPPED: {reason}");
        return;
    }
    let context = tempfile::tempdir().expect("tempdir");
    let image = AgentImage::build(context.path(), "kill");
    let alloc = AllocImage::get();
    let _slot = common::oom::oom_test_slot_blocking();
    let dir = config_dir();
    let pod = pod_options(&daemonset_pod_spec(), dir.path(), SeccompChoice::Profile);
    assert!(
        !pod.caps_added.iter().any(|c| c == "SYS_ADMIN"),
        "least privilege: {:?}",
        pod.caps_added
    );
    let agent = start_agent(&image, "oomscope-test-agent", &pod, dir.path());
    let logs = wait_for_log(&agent, "everything is ready", Duration::from_secs(120));
    assert!(logs.contains("ebpf=true"), "eBPF in the container:\n{logs}");

    let (_victim, victim_id) = run_victim("oomscope-test-victim");
    let records = dir.path().join("out/records.json");
    let contents = FileContents::wait_for(&records, Duration::from_secs(60), |c| {
        kill_record_for(c, &victim_id).is_some()
    });
    let Some((record, resource)) = kill_record_for(&contents, &victim_id) else {
        panic!(
            "no kill record for container {victim_id}; agent output:\n{}",
            agent.logs()
        );
    };
    let attrs = &record["attributes"];
    let text = |key: &str| {
        json_attr(attrs, key)
            .and_then(|v| v["stringValue"].as_str())
            .map(str::to_owned)
    };
    let int = |key: &str| {
        json_attr(attrs, key)
            .and_then(|v| v["intValue"].as_str().and_then(|s| s.parse::<i64>().ok()))
    };
    assert_eq!(
        text("process.command_line").as_deref(),
        Some("/alloc"),
        "{record:#}"
    );
    assert_eq!(text("oom.source").as_deref(), Some("ebpf"), "{record:#}");
    assert_eq!(
        text("oom.constraint").as_deref(),
        Some("CONSTRAINT_MEMCG"),
        "{record:#}"
    );
    assert_eq!(int("oom.memcg.limit"), Some(64 << 20), "{record:#}");
    assert!(
        int("oom.victim.anon_rss").is_some_and(|v| v > 32 << 20),
        "{record:#}"
    );
    assert!(
        text("oom.victim.cgroup").is_some_and(|c| c.contains(&victim_id)),
        "{record:#}"
    );
    assert!(int("process.pid").is_some_and(|p| p > 0), "{record:#}");
    // The victim's container is the record's resource.
    podman::assert_alloc_container_resource(
        &resource["attributes"],
        "oomscope-test-victim",
        &victim_id,
    );
    drop(alloc);
}

#[test]
#[ignore = "needs root and podman; run with --include-ignored"]
fn without_the_seccomp_profile_or_a_capability_doctor_and_the_agent_say_which() {
    if let Some(reason) = skip_reason() {
        println!("SKIPPED: {reason}");
        return;
    }
    let context = tempfile::tempdir().expect("tempdir");
    let image = AgentImage::build(context.path(), "denied");
    let spec = daemonset_pod_spec();
    let doctor = |choice: SeccompChoice| {
        let dir = config_dir();
        let pod = pod_options(&spec, dir.path(), choice);
        let mut args = vec!["run".to_string(), "--rm".to_string()];
        args.extend(pod.args.iter().cloned());
        args.push(image.tag.clone());
        args.push("doctor".into());
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = podman::podman_output(&refs);
        String::from_utf8_lossy(&out.stdout).into_owned()
    };

    // As the DaemonSet is written: eBPF works, and the journald receiver
    // finds libsystemd in the image (it loads it when it starts: ldd does
    // not list it).
    let report = doctor(SeccompChoice::Profile);
    assert!(
        report.contains("OK       seccomp") && report.contains("OK       ebpf_probe"),
        "{report}"
    );
    assert!(!report.contains("cannot load libsystemd"), "{report}");
    // The runtime's default seccomp profile: it denies bpf and
    // perf_event_open to a container without CAP_SYS_ADMIN.
    let report = doctor(SeccompChoice::RuntimeDefault);
    assert!(
        report.contains("MISSING  seccomp")
            && report.contains("denies bpf (EPERM), perf_event_open (EPERM)"),
        "{report}"
    );
    assert!(
        report.contains("eBPF is blocked: a seccomp filter denies the system calls bpf"),
        "{report}"
    );
    // The profile but not CAP_PERFMON.
    let report = doctor(SeccompChoice::WithoutCapability("PERFMON"));
    assert!(
        report.contains("eBPF is blocked: the capability CAP_PERFMON is missing"),
        "{report}"
    );
    assert!(!report.contains("MISSING  seccomp"), "{report}");

    // The agent itself says the same once and goes on with the kernel log.
    let dir = config_dir();
    let pod = pod_options(&spec, dir.path(), SeccompChoice::RuntimeDefault);
    let agent = start_agent(&image, "oomscope-test-agent-seccomp", &pod, dir.path());
    let logs = wait_for_log(&agent, "everything is ready", Duration::from_secs(120));
    assert!(
        logs.contains(
            "a seccomp filter denies the system calls bpf (EPERM) and perf_event_open (EPERM)"
        ),
        "{logs}"
    );
    assert!(logs.contains("ebpf=false"), "{logs}");
}
