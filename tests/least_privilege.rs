//! Least privilege, against the real kernel: the agent run as an
//! unprivileged user with exactly the capabilities SECURITY.md lists
//! (setpriv from util-linux, as systemd's `AmbientCapabilities` gives them)
//! still catches a real contained OOM kill with the full record; and once
//! its pipelines have started, every thread of the agent holds only what
//! its receivers need while running. Needs root (to hand out capabilities
//! and to make memory cgroups); skips with a reason elsewhere.

mod common;

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::free_port;
use common::kernel_log::killed_line;
use common::oom::{MemoryCgroup, OOM_LIMIT_BYTES};
use common::oomscope::Oomscope;
use common::otlp::{attr_str, FileContents};
use common::{is_root, skip};

const TIMEOUT: Duration = Duration::from_secs(60);

/// Capability numbers (linux/capability.h).
const CAP_DAC_READ_SEARCH: u32 = 2;
const CAP_SYS_PTRACE: u32 = 19;
const CAP_SYSLOG: u32 = 34;
const CAP_PERFMON: u32 = 38;
const CAP_BPF: u32 = 39;

/// The `oom` receiver's set, as deploy/systemd/oomscope.service grants it.
const OOM_SET: &str = "bpf,perfmon,syslog,dac_read_search,sys_ptrace";
/// What the `oom` receiver keeps once started: CAP_PERFMON only attaches.
const OOM_RUNTIME: u64 =
    1 << CAP_BPF | 1 << CAP_SYSLOG | 1 << CAP_DAC_READ_SEARCH | 1 << CAP_SYS_PTRACE;

/// The unprivileged user the agent runs as (Debian's `nobody`).
const NOBODY: u32 = 65534;

/// `CapEff` and `CapPrm` of every thread of `pid`.
fn thread_caps(pid: u32) -> Vec<(String, u64, u64)> {
    let mut out = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).expect("tasks") {
        let task = task.expect("task");
        let Ok(status) = std::fs::read_to_string(task.path().join("status")) else {
            continue; // ended meanwhile
        };
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
                .unwrap_or_else(|| panic!("{name} in {status}"))
        };
        let name = status
            .lines()
            .find_map(|l| l.strip_prefix("Name:"))
            .unwrap_or("")
            .trim()
            .to_owned();
        out.push((name, field("CapEff:"), field("CapPrm:")));
    }
    out
}

/// The agent's log said the capabilities were given up: by then every
/// thread has been changed.
fn wait_for_drop(agent: &mut Oomscope) {
    agent.wait_for_output("gave up the capabilities only start-up needed", TIMEOUT);
}

/// An agent with the `oom` receiver (when `oom`) and `otlp`, logs to a file.
fn agent_config(out: &Path, health: u16, oom: bool, extra_service: &str) -> String {
    let (oom_receiver, receivers) = if oom {
        (
            format!(
                "  oom: {{ mode: ebpf, events: {{ endpoint: \"127.0.0.1:{}\" }} }}\n",
                free_port()
            ),
            "oom, otlp",
        )
    } else {
        (String::new(), "otlp")
    };
    format!(
        r#"
receivers:
{oom_receiver}  otlp: {{ protocols: {{ grpc: {{ endpoint: "127.0.0.1:{grpc}" }} }} }}
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
{extra_service}  pipelines:
    logs: {{ receivers: [{receivers}], processors: [batch], exporters: [file] }}
"#,
        grpc = free_port(),
        out = out.display()
    )
}

/// As `nobody` with only the documented set (no CAP_SYS_ADMIN, no
/// CAP_SYS_RESOURCE, no CAP_DAC_OVERRIDE): eBPF loads, a contained kill is
/// one complete record, equal to the kernel's line, with the victim's
/// command line and executable (another user's process: CAP_SYS_PTRACE);
/// after start-up CAP_PERFMON is gone from every thread.
#[tokio::test(flavor = "multi_thread")]
async fn unprivileged_with_the_documented_set_catches_a_contained_kill() {
    const TEST: &str = "unprivileged_with_the_documented_set_catches_a_contained_kill";
    if !is_root() {
        return skip(
            TEST,
            "needs root (to hand capabilities to another user, memory cgroups)",
        );
    }
    if Command::new("setpriv").arg("--version").output().is_err() {
        return skip(TEST, "setpriv (util-linux) is not installed");
    }
    // Mounting tracefs needs CAP_SYS_ADMIN: done beforehand, as the systemd
    // unit's ExecStartPre does.
    if !Path::new("/sys/kernel/tracing/events").is_dir() {
        let mounted = Command::new("mount")
            .args(["-t", "tracefs", "nodev", "/sys/kernel/tracing"])
            .status()
            .is_ok_and(|s| s.success());
        if !mounted {
            return skip(TEST, "tracefs is not mounted and cannot be");
        }
    }
    let _slot = common::oom::oom_test_slot().await;
    let Some(cgroup) = MemoryCgroup::create(OOM_LIMIT_BYTES).expect("create the test cgroup")
    else {
        return skip(TEST, "no memory cgroup controller to contain an OOM kill");
    };
    // The output directory belongs to the agent's user; the config and the
    // binary are only readable through CAP_DAC_READ_SEARCH where they sit.
    let dir = tempfile::tempdir().expect("tempdir");
    let out_dir = dir.path().join("out");
    std::fs::create_dir(&out_dir).expect("mkdir");
    std::os::unix::fs::chown(&out_dir, Some(NOBODY), Some(NOBODY)).expect("chown");
    std::fs::set_permissions(&out_dir, std::fs::Permissions::from_mode(0o700)).expect("chmod");
    let out = out_dir.join("out.jsonl");
    let health = free_port();
    let caps = format!("-all,+{}", OOM_SET.replace(',', ",+"));
    let (inh, amb, bnd) = (
        format!("--inh-caps={caps}"),
        format!("--ambient-caps={caps}"),
        format!("--bounding-set={caps}"),
    );
    let uid = NOBODY.to_string();
    let mut agent = Oomscope::start_wrapped(
        &[
            "setpriv",
            "--reuid",
            &uid,
            "--regid",
            &uid,
            "--clear-groups",
            &inh,
            &amb,
            &bnd,
            "--",
        ],
        &agent_config(&out, health, true, ""),
    );
    agent.wait_healthy(health, TIMEOUT);
    wait_for_drop(&mut agent);
    let status = std::fs::read_to_string(format!("/proc/{}/status", agent.pid())).expect("status");
    assert!(
        status.lines().any(|l| l
            .split_whitespace()
            .eq(["Uid:", "65534", "65534", "65534", "65534"])),
        "the agent runs as nobody: {status}"
    );
    for (name, eff, prm) in thread_caps(agent.pid()) {
        assert_eq!(eff, OOM_RUNTIME, "thread {name}: CapEff {eff:x}");
        assert_eq!(prm, OOM_RUNTIME, "thread {name}: CapPrm {prm:x}");
    }
    assert_eq!(OOM_RUNTIME & 1 << CAP_PERFMON, 0);

    let mut child = cgroup.spawn_allocator().expect("spawn the allocator");
    let pid = child.pid();
    let exited = child.wait().expect("wait");
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&exited),
        Some(libc::SIGKILL)
    );
    let got = FileContents::wait_for(&out, TIMEOUT, |c| {
        c.logs.iter().any(|r| {
            r["eventName"] == "linux.oom.kill"
                && attr_str(r, "process.pid") == Some(pid.to_string())
        })
    });
    let r = got
        .logs
        .iter()
        .find(|r| attr_str(r, "process.pid") == Some(pid.to_string()))
        .unwrap_or_else(|| panic!("no record for {pid}; the agent said:\n{}", agent.output()));
    assert_eq!(attr_str(r, "oom.source").as_deref(), Some("ebpf"), "{r:#}");
    assert_eq!(attr_str(r, "oom.trigger.pid"), Some(pid.to_string()));
    assert_eq!(
        attr_str(r, "oom.constraint").as_deref(),
        Some("CONSTRAINT_MEMCG")
    );
    assert_eq!(attr_str(r, "oom.memcg"), Some(cgroup.cgroup_path()));
    assert_eq!(
        attr_str(r, "oom.memcg.limit"),
        Some(OOM_LIMIT_BYTES.to_string())
    );
    assert_eq!(attr_str(r, "oom.victim.cgroup"), Some(cgroup.cgroup_path()));
    let line = killed_line(pid, TIMEOUT);
    assert_eq!(
        attr_str(r, "oom.victim.anon_rss"),
        Some((line.anon_rss_kb * 1024).to_string()),
        "{}",
        line.line
    );
    assert_eq!(
        attr_str(r, "oom.victim.comm").as_deref(),
        Some(line.comm.as_str())
    );
    // Another user's process: its exe link needs CAP_SYS_PTRACE.
    let exe = attr_str(r, "process.executable.path")
        .unwrap_or_else(|| panic!("no process.executable.path: {r:#}"));
    assert!(
        Path::new(&exe)
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with("python3")),
        "{exe}"
    );
    let command_line = attr_str(r, "process.command_line").unwrap_or_default();
    assert!(
        command_line.contains(" -c ") && command_line.contains("without being OOM-killed"),
        "{r:#}"
    );
    let (status, clean) = agent.stop(TIMEOUT);
    assert!(clean && status.success(), "{}", agent.output());
}

/// As root with every capability root has here: after start-up each thread
/// holds only the receivers' runtime set (an OTLP-only agent: none at all);
/// `drop_capabilities: false` keeps them.
#[test]
fn as_root_only_the_runtime_set_is_kept() {
    const TEST: &str = "as_root_only_the_runtime_set_is_kept";
    if !is_root() {
        return skip(TEST, "needs root (there is nothing to drop otherwise)");
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let before = thread_caps(std::process::id())[0].1;

    let health = free_port();
    let mut agent = Oomscope::start(
        &agent_config(&dir.path().join("a.jsonl"), health, true, ""),
        &[],
    );
    agent.wait_healthy(health, TIMEOUT);
    wait_for_drop(&mut agent);
    for (name, eff, prm) in thread_caps(agent.pid()) {
        assert_eq!(eff, OOM_RUNTIME & before, "thread {name}: CapEff {eff:x}");
        assert_eq!(prm, OOM_RUNTIME & before, "thread {name}: CapPrm {prm:x}");
    }
    drop(agent);

    // OTLP only: nothing is needed once the ports are bound.
    let health = free_port();
    let mut agent = Oomscope::start(
        &agent_config(&dir.path().join("b.jsonl"), health, false, ""),
        &[],
    );
    agent.wait_healthy(health, TIMEOUT);
    wait_for_drop(&mut agent);
    for (name, eff, prm) in thread_caps(agent.pid()) {
        assert_eq!((eff, prm), (0, 0), "thread {name}");
    }
    drop(agent);

    let health = free_port();
    let mut agent = Oomscope::start(
        &agent_config(
            &dir.path().join("c.jsonl"),
            health,
            false,
            "  drop_capabilities: false\n",
        ),
        &[],
    );
    agent.wait_healthy(health, TIMEOUT);
    for (name, eff, _) in thread_caps(agent.pid()) {
        assert_eq!(eff, before, "thread {name} keeps root's set");
    }
}
