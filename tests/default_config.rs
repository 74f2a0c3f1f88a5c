//! The built-in default configuration (`config/default.yaml`, what runs with
//! no `--config`) end to end against the real kernel: with the `oom`, `kmsg`
//! and `filelog` receivers all on, one OOM kill is one record (the kmsg
//! receiver leaves kill reports to the oom receiver), and the kernel's other
//! memory trouble arrives from /dev/kmsg. Only the ports and the data
//! directory are moved to the test's. Needs root; skips with a printed reason
//! where the host lacks the facility.

mod common;

use std::time::Duration;

use common::free_port;
use common::oom::{MemoryCgroup, OOM_LIMIT_BYTES};
use common::oomscope::Oomscope;
use common::otlp::{attr_str, FileContents};
use common::{is_root, skip};

const TIMEOUT: Duration = Duration::from_secs(60);
const DEFAULT: &str = include_str!("../config/default.yaml");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn default_config_reports_one_kill_once_and_other_kernel_memory_trouble() {
    const TEST: &str = "default_config_reports_one_kill_once_and_other_kernel_memory_trouble";
    if !is_root() {
        return skip(TEST, "needs root (eBPF, /dev/kmsg, memory cgroups)");
    }
    let _slot = common::oom::oom_test_slot().await;
    let Some(cgroup) = MemoryCgroup::create(OOM_LIMIT_BYTES).expect("create the test cgroup")
    else {
        return skip(TEST, "no memory cgroup controller to contain an OOM kill");
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let health = free_port();
    let config = DEFAULT
        .replace(
            "${env:OOMSCOPE_DATA_DIR:-/var/lib/oomscope}",
            &dir.path().display().to_string(),
        )
        .replace("127.0.0.1:4317", &format!("127.0.0.1:{}", free_port()))
        .replace("127.0.0.1:4318", &format!("127.0.0.1:{}", free_port()))
        .replace("127.0.0.1:13133", &format!("127.0.0.1:{health}"));
    assert!(
        config.contains("kmsg:") && config.contains("filelog:") && config.contains("journald:")
    );
    // The ports the default config leaves to their defaults, moved by a
    // second file merged over it (as a user would).
    let ports = dir.path().join("ports.yaml");
    std::fs::write(
        &ports,
        format!(
            "receivers:\n  oom:\n    events: {{ endpoint: \"127.0.0.1:{}\" }}\n\
             service:\n  telemetry:\n    metrics: {{ address: \"127.0.0.1:{}\" }}\n",
            free_port(),
            free_port()
        ),
    )
    .expect("write the ports file");
    let ports = ports.display().to_string();
    let mut agent = Oomscope::start(&config, &["--config", &ports]);
    agent.wait_healthy(health, TIMEOUT);

    // The kernel's other memory trouble: a page allocation failure line,
    // written to the kernel log the way the kernel words it.
    let marker = format!("oomscope-test-{}", std::process::id());
    write_allocation_failure(&marker);

    let mut child = cgroup.spawn_allocator().expect("spawn the allocator");
    let pid = child.pid();
    child.wait().expect("wait");

    let out = dir.path().join("oomscope.otlp.jsonl");
    FileContents::wait_for(&out, TIMEOUT, |c| {
        let kill = c
            .logs
            .iter()
            .any(|r| attr_str(r, "process.pid") == Some(pid.to_string()));
        let failure = c.logs.iter().any(|r| {
            attr_str(r, "oom.pattern").as_deref() == Some("kernel.page_allocation_failure")
                && r["body"]["stringValue"]
                    .as_str()
                    .is_some_and(|b| b.contains(&marker))
        });
        kill && failure
    });
    // A fence for the kmsg receiver, which reads the kernel log in order:
    // once a later record has arrived, anything it made of the kill has too.
    // (The oom receiver's record below is checked to be the merged one, so
    // no lone half of the kill is still waiting for its other half.)
    let fence = format!("{marker}-fence");
    write_allocation_failure(&fence);
    FileContents::wait_for(&out, TIMEOUT, |c| {
        c.log_bodies.iter().any(|b| b.contains(&fence))
    });
    let got = FileContents::read(&out).logs;
    let kills: Vec<_> = got
        .iter()
        .filter(|r| attr_str(r, "process.pid") == Some(pid.to_string()))
        .collect();
    assert_eq!(kills.len(), 1, "one record for the kill: {kills:#?}");
    assert_eq!(kills[0]["eventName"], "linux.oom.kill");
    assert_eq!(attr_str(kills[0], "oom.source").as_deref(), Some("ebpf"));
    assert_eq!(
        attr_str(kills[0], "oom.constraint").as_deref(),
        Some("CONSTRAINT_MEMCG"),
        "the eBPF event merged with the kernel's report: {:#?}",
        kills[0]
    );
    let kernel_patterns: Vec<String> = got
        .iter()
        .filter_map(|r| attr_str(r, "oom.pattern"))
        .filter(|p| p.starts_with("kernel."))
        .collect();
    assert_eq!(
        kernel_patterns,
        ["kernel.page_allocation_failure"; 2],
        "only the allocation failure came from kmsg; records: {got:#?}\nagent:\n{}",
        agent.output()
    );
    let (status, _) = agent.stop(TIMEOUT);
    assert!(status.success(), "agent exit: {status}\n{}", agent.output());
}

/// Writes a page allocation failure line to the kernel log, worded the way
/// the kernel words it, with `marker` as the task name.
fn write_allocation_failure(marker: &str) {
    common::kernel_log::write_kmsg(&format!(
        "<4>{marker}: page allocation failure: order:4, mode:0x40dc0(GFP_KERNEL|__GFP_COMP|__GFP_ZERO), nodemask=(null)\n"
    ));
}
