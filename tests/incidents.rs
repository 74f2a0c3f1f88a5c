//! Incidents end to end: a real Java program in a memory cgroup prints
//! `OutOfMemoryError` (read by `filelog`), then the kernel OOM-kills it
//! (the `oom` receiver); the `memory` receiver samples its cgroup
//! meanwhile. Both records carry one `oom.incident.id`, the kill record its
//! lead-up, and `ListIncidents` shows the incident with both. Needs root
//! and java; skips with a printed reason where the host lacks either.

mod common;

use std::path::Path;
use std::time::Duration;

use common::free_port;
use common::java::{agent_config, incident_setup, AgentPorts, JavaIncident, JAVA_LIMIT_BYTES};
use common::oomscope::Oomscope;
use common::otlp::{attr_int, attr_str, json_attr, FileContents};

use oomscope::api::v1::{ListIncidentsRequest, SnapshotRequest};
use oomscope::api::EventsEndpoint;

const TIMEOUT: Duration = Duration::from_secs(120);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_java_out_of_memory_error_and_its_kill_are_one_incident() {
    const TEST: &str = "a_java_out_of_memory_error_and_its_kill_are_one_incident";
    let Some(setup) = incident_setup(TEST, |_| true).await else {
        return;
    };
    let (dir, cgroup) = (&setup.dir, &setup.cgroup);
    let out = dir.path().join("out.jsonl");
    let (events, health) = (free_port(), free_port());
    let mut agent = Oomscope::start(
        &agent_config(
            dir.path(),
            &out,
            &AgentPorts {
                events,
                health,
                status: None,
            },
            &[cgroup.cgroup_path()],
            false,
        ),
        &[],
    );
    agent.wait_healthy(health, TIMEOUT);

    let mut java = JavaIncident::start(dir.path(), cgroup);
    let java_pid = java.pid;

    // The runtime's message first: it goes out at once, with an id.
    let got = FileContents::wait_for(&out, TIMEOUT, |c| {
        c.logs
            .iter()
            .any(|r| attr_str(r, "oom.runtime").as_deref() == Some("java"))
    });
    let message = got
        .logs
        .iter()
        .find(|r| attr_str(r, "oom.runtime").as_deref() == Some("java"))
        .unwrap_or_else(|| {
            panic!(
                "no java record; the log has:\n{}\nthe agent said:\n{}",
                java.log_text(),
                agent.output()
            )
        })
        .clone();
    let message_id = attr_str(&message, "oom.incident.id")
        .unwrap_or_else(|| panic!("the java record has no oom.incident.id: {message:#}"));
    assert_eq!(message_id.len(), 32, "{message_id}");

    // Then the kill, once the agent has sampled the JVM's cgroup (the
    // lead-up's last sample).
    java.wait_sampled(events, &cgroup.cgroup_path()).await;
    java.release();
    java.wait_killed();
    let is_kill = |r: &serde_json::Value| {
        r["eventName"] == "linux.oom.kill"
            && attr_int(r, "process.pid") == Some(i64::from(java_pid))
    };
    let got = FileContents::wait_for(&out, TIMEOUT, |c| c.logs.iter().any(is_kill));
    let kill = got
        .logs
        .iter()
        .find(|r| is_kill(r))
        .unwrap_or_else(|| {
            panic!(
                "no kill record for pid {java_pid}; the agent said:\n{}",
                agent.output()
            )
        })
        .clone();

    // One incident.
    assert_eq!(
        attr_str(&kill, "oom.incident.id").as_deref(),
        Some(message_id.as_str()),
        "kill: {kill:#}\nmessage: {message:#}"
    );
    // Its lead-up: the cgroup was sampled before the kill.
    assert_eq!(
        attr_str(&kill, "oom.leadup.cgroup"),
        Some(cgroup.cgroup_path()),
        "{kill:#}"
    );
    let usage = attr_int(&kill, "oom.leadup.usage").expect("oom.leadup.usage");
    assert!(usage > 0 && usage <= JAVA_LIMIT_BYTES as i64, "{usage}");
    assert!(
        attr_int(&kill, "oom.leadup.working_set").is_some(),
        "{kill:#}"
    );
    assert!(
        attr_int(&kill, "oom.leadup.samples").is_some_and(|n| n >= 1),
        "{kill:#}"
    );
    assert!(
        json_attr(&kill["attributes"], "oom.leadup.sample_age").is_some(),
        "{kill:#}"
    );
    // Its limit and counters, read at the kill.
    assert_eq!(
        attr_int(&kill, "oom.leadup.limit"),
        Some(JAVA_LIMIT_BYTES as i64),
        "{kill:#}"
    );
    if cgroup.version() == common::oom::CgroupVersion::V2 {
        assert!(
            attr_int(&kill, "oom.leadup.events.oom_kill").is_some_and(|n| n >= 1),
            "{kill:#}"
        );
        assert!(
            attr_int(&kill, "oom.leadup.events.max").is_some_and(|n| n >= 1),
            "{kill:#}"
        );
    } else {
        assert!(
            attr_int(&kill, "oom.leadup.failcnt").is_some_and(|n| n >= 1),
            "{kill:#}"
        );
    }
    if Path::new("/proc/pressure/memory").exists() {
        assert!(
            json_attr(&kill["attributes"], "oom.leadup.psi.some.avg10").is_some(),
            "{kill:#}"
        );
    }
    // The kernel's task table names the JVM.
    let tasks = json_attr(&kill["attributes"], "oom.tasks.largest")
        .and_then(|v| v["arrayValue"]["values"].as_array().cloned())
        .unwrap_or_else(|| panic!("no oom.tasks.largest: {kill:#}"));
    assert!(
        tasks.iter().any(|t| t["stringValue"]
            .as_str()
            .is_some_and(|s| s.contains(&format!("pid={java_pid} ")))),
        "{tasks:?}"
    );

    // The API shows the one incident with both.
    let endpoint: EventsEndpoint = format!("127.0.0.1:{events}").parse().expect("endpoint");
    let mut client = oomscope::api::connect(&endpoint).await.expect("connect");
    let listed = client
        .list_incidents(ListIncidentsRequest {
            limit: 0,
            id: message_id.clone(),
        })
        .await
        .expect("ListIncidents")
        .into_inner();
    assert_eq!(listed.incidents.len(), 1, "{listed:?}");
    let incident = &listed.incidents[0];
    let api_kill = incident.kill.as_ref().expect("the incident's kill");
    assert_eq!(api_kill.victim.as_ref().map(|v| v.pid), Some(java_pid));
    assert_eq!(api_kill.incident_id, message_id);
    let lead_up = api_kill.lead_up.as_ref().expect("lead-up");
    assert!(!lead_up.samples.is_empty(), "{lead_up:?}");
    assert_eq!(incident.messages.len(), 1, "{incident:?}");
    let m = &incident.messages[0];
    assert_eq!(m.runtime, "java");
    assert_eq!(m.pid, java_pid, "the writer of the log is the JVM");
    assert!(
        m.text
            .contains("java.lang.OutOfMemoryError: Java heap space"),
        "{}",
        m.text
    );
    assert!(incident.pids.contains(&java_pid));

    // And the snapshot lists the cgroup.
    let snapshot = client
        .snapshot(SnapshotRequest {
            include_history: true,
            include_cgroup_samples: true,
        })
        .await
        .expect("Snapshot")
        .into_inner();
    assert!(snapshot.time_unix_nano > 0);
    assert!(snapshot
        .system
        .is_some_and(|s| s.total_bytes.is_some_and(|t| t > 0)));
    assert!(!snapshot.history.is_empty());
    assert!(
        snapshot
            .cgroups
            .iter()
            .any(|c| c.path == cgroup.cgroup_path()
                && c.limit_bytes == Some(JAVA_LIMIT_BYTES)
                && !c.samples.is_empty()),
        "{:?}",
        snapshot.cgroups
    );
    let _ = agent.stop(Duration::from_secs(30));
}
