//! The `oom` receiver end to end, against the real kernel: real OOM kills in
//! memory cgroups (never an unbounded allocation), the built binary, records
//! read back from its file exporter and from rotel. Needs root; skips with a
//! printed reason where the host lacks the facility.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::free_port;
use common::kernel_log::killed_line;
use common::oom::{GatedAllocator, MemoryCgroup, OOM_LIMIT_BYTES};
use common::oomscope::Oomscope;
use common::otlp::{attr_str, FileContents};
use common::rotel::Rotel;
use common::{is_root, signal, skip};

const TIMEOUT: Duration = Duration::from_secs(60);

/// oomscope with the oom receiver feeding a file (logs and metrics), and
/// optionally rotel. Ready once its health check answers (the receiver has
/// attached by then).
fn start_agent(out: &Path, mode: &str, rotel: Option<&Rotel>) -> (Oomscope, u16) {
    start_agent_with_events(out, mode, rotel, free_port())
}

/// Like [`start_agent`], with the live events API on `events`.
fn start_agent_with_events(
    out: &Path,
    mode: &str,
    rotel: Option<&Rotel>,
    events: u16,
) -> (Oomscope, u16) {
    start_agent_configured(out, mode, rotel, events, "")
}

/// Like [`start_agent_with_events`], with `oom_extra` (indented YAML lines)
/// added to the oom receiver's config.
fn start_agent_configured(
    out: &Path,
    mode: &str,
    rotel: Option<&Rotel>,
    events: u16,
    oom_extra: &str,
) -> (Oomscope, u16) {
    let health = free_port();
    let (rotel_exporter, rotel_name) = match rotel {
        Some(r) => (
            format!(
                "  otlp:\n    endpoint: \"{}\"\n    tls: {{ insecure: true }}\n",
                r.grpc_addr()
            ),
            ", otlp",
        ),
        None => (String::new(), ""),
    };
    let config = format!(
        r#"
receivers:
  oom:
    mode: {mode}
    events: {{ endpoint: "127.0.0.1:{events}" }}
{oom_extra}processors:
  batch: {{ timeout: 5s }}
exporters:
  file: {{ path: "{out}" }}
{rotel_exporter}extensions:
  health_check: {{ endpoint: "127.0.0.1:{health}" }}
service:
  extensions: [health_check]
  telemetry: {{ metrics: {{ address: "" }} }}
  oom_score_adj: null
  pipelines:
    logs: {{ receivers: [oom], processors: [batch], exporters: [file{rotel_name}] }}
    metrics: {{ receivers: [oom], processors: [batch], exporters: [file] }}
"#,
        out = out.display()
    );
    let mut agent = Oomscope::start(&config, &[]);
    agent.wait_healthy(health, TIMEOUT);
    (agent, health)
}

/// The nice value of `pid`'s thread named `name` (`/proc/PID/task/*/stat`,
/// field 19), `None` without such a thread.
fn thread_nice(pid: u32, name: &str) -> Option<i64> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).ok()?;
    for task in tasks.flatten() {
        let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        if comm.trim_end() != name {
            continue;
        }
        let stat = std::fs::read_to_string(task.path().join("stat")).ok()?;
        // Fields after the command (in parentheses): state is field 3.
        let after = &stat[stat.rfind(')')? + 2..];
        return after.split(' ').nth(19 - 3)?.parse().ok();
    }
    None
}

fn oom_records(out: &Path, n: usize, agent: &Oomscope) -> Vec<serde_json::Value> {
    let got = FileContents::wait_for(out, TIMEOUT, |c| {
        c.logs
            .iter()
            .filter(|r| r["eventName"] == "linux.oom.kill")
            .count()
            >= n
    });
    let records: Vec<serde_json::Value> = got
        .logs
        .into_iter()
        .filter(|r| r["eventName"] == "linux.oom.kill")
        .collect();
    assert!(
        records.len() >= n,
        "expected {n} OOM records, got {}; the agent said:\n{}",
        records.len(),
        agent.output()
    );
    records
}

/// Stops the agent (SIGSTOP), lets the gated `victim` allocate into its
/// limit, waits until it was OOM-killed and reaped, then lets the agent run
/// on (SIGCONT): the agent reads nothing of the victim while it lived.
fn killed_while_the_agent_is_stopped(agent: &Oomscope, victim: &mut GatedAllocator, pid: i32) {
    signal(agent.pid(), libc::SIGSTOP);
    victim.release().expect("release the allocator");
    let status = victim.child.wait().expect("wait");
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(libc::SIGKILL),
        "the allocator was OOM-killed"
    );
    assert!(
        !Path::new(&format!("/proc/{pid}")).exists(),
        "the victim is reaped before the agent runs again"
    );
    signal(agent.pid(), libc::SIGCONT);
}

fn record_for(records: &[serde_json::Value], pid: i32) -> &serde_json::Value {
    let matching: Vec<&serde_json::Value> = records
        .iter()
        .filter(|r| attr_str(r, "process.pid") == Some(pid.to_string()))
        .collect();
    assert_eq!(
        matching.len(),
        1,
        "exactly one record for pid {pid}: {records:#?}"
    );
    matching[0]
}

/// The memory figures equal the kernel's "Killed process" line, in bytes.
fn assert_memory_matches_kernel(record: &serde_json::Value, pid: i32) {
    let line = killed_line(pid, TIMEOUT);
    let kib = |v: u64| Some((v * 1024).to_string());
    assert_eq!(
        attr_str(record, "oom.victim.total_vm"),
        kib(line.total_vm_kb),
        "{}",
        line.line
    );
    assert_eq!(
        attr_str(record, "oom.victim.anon_rss"),
        kib(line.anon_rss_kb),
        "{}",
        line.line
    );
    assert_eq!(
        attr_str(record, "oom.victim.file_rss"),
        kib(line.file_rss_kb),
        "{}",
        line.line
    );
    assert_eq!(
        attr_str(record, "oom.victim.shmem_rss"),
        kib(line.shmem_rss_kb),
        "{}",
        line.line
    );
    if let Some(pg) = line.pgtables_kb {
        assert_eq!(
            attr_str(record, "oom.victim.pgtables"),
            kib(pg),
            "{}",
            line.line
        );
    }
    assert_eq!(
        attr_str(record, "oom.victim.comm").as_deref(),
        Some(line.comm.as_str())
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn one_contained_kill_is_one_complete_record() {
    const TEST: &str = "one_contained_kill_is_one_complete_record";
    if !is_root() {
        return skip(TEST, "needs root (eBPF, /dev/kmsg, memory cgroups)");
    }
    let _slot = common::oom::oom_test_slot().await;
    let Some(cgroup) = MemoryCgroup::create(OOM_LIMIT_BYTES).expect("create the test cgroup")
    else {
        return skip(TEST, "no memory cgroup controller to contain an OOM kill");
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("out.jsonl");
    let backend = Rotel::start();
    let (mut agent, _) = start_agent(&out, "auto", Some(&backend));
    // The receiver reads kills on its own thread, ahead of bulk work (root
    // may raise its priority).
    assert_eq!(
        thread_nice(agent.pid(), "oom-kills"),
        Some(-10),
        "the oom-kills thread at nice -10"
    );

    let mut child = cgroup.spawn_allocator().expect("spawn the allocator");
    let pid = child.pid();
    let status = child.wait().expect("wait");
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(libc::SIGKILL)
    );

    let records = oom_records(&out, 1, &agent);
    let r = record_for(&records, pid);
    assert_eq!(r["severityText"], "ERROR");
    assert_eq!(r["severityNumber"], 17);
    assert_eq!(
        attr_str(r, "oom.source").as_deref(),
        Some("ebpf"),
        "the eBPF path must be the one tested here: {r:#}"
    );
    assert_eq!(attr_str(r, "oom.victim.comm").as_deref(), Some("python3"));
    assert_eq!(
        attr_str(r, "oom.trigger.pid"),
        Some(pid.to_string()),
        "python allocated itself"
    );
    assert_eq!(attr_str(r, "oom.trigger.comm").as_deref(), Some("python3"));
    assert_eq!(
        attr_str(r, "oom.constraint").as_deref(),
        Some("CONSTRAINT_MEMCG")
    );
    assert_eq!(attr_str(r, "oom.trigger_type").as_deref(), Some("cgroup"));
    assert_eq!(attr_str(r, "oom.memcg"), Some(cgroup.cgroup_path()));
    assert_eq!(attr_str(r, "oom.victim.cgroup"), Some(cgroup.cgroup_path()));
    assert_eq!(
        attr_str(r, "oom.memcg.limit"),
        Some(OOM_LIMIT_BYTES.to_string())
    );
    assert_eq!(attr_str(r, "oom.victim.exiting").as_deref(), Some("false"));
    assert!(
        attr_str(r, "oom.gfp_mask").is_some_and(|g| g.starts_with("0x")),
        "{r:#}"
    );
    assert_eq!(attr_str(r, "oom.order").as_deref(), Some("0"));
    assert_eq!(attr_str(r, "process.real_user.id").as_deref(), Some("0"));
    assert_memory_matches_kernel(r, pid);

    // A real backend got the same record.
    let got = backend.wait_for(TIMEOUT, |rc| {
        rc.logs
            .iter()
            .any(|l| l.attributes.get("process.pid") == Some(&pid.to_string()))
    });
    let at_rotel = got
        .logs
        .iter()
        .find(|l| l.attributes.get("process.pid") == Some(&pid.to_string()))
        .expect("record at rotel");
    assert_eq!(
        at_rotel.attributes.get("oom.constraint"),
        Some("CONSTRAINT_MEMCG")
    );
    assert_eq!(at_rotel.attributes.get("oom.source"), Some("ebpf"));
    assert_eq!(at_rotel.severity_text, "ERROR");

    // The counter.
    let ours = |c: &FileContents| -> Vec<i64> {
        c.points
            .iter()
            .filter(|(n, p)| {
                n == "linux.oom.kills"
                    && common::otlp::json_attr(&p["attributes"], "oom.victim.cgroup")
                        .and_then(|v| v["stringValue"].as_str())
                        == Some(cgroup.cgroup_path().as_str())
            })
            .filter_map(|(_, p)| common::otlp::point_int(p))
            .collect()
    };
    let metrics = FileContents::wait_for(&out, TIMEOUT, |c| !ours(c).is_empty());
    let kills = ours(&metrics);
    assert_eq!(kills.last(), Some(&1), "{:?}", metrics.points);
    let (status, clean) = agent.stop(TIMEOUT);
    assert!(clean && status.success(), "{}", agent.output());
}

/// A trigger allocates inside a memory cgroup while children with
/// `oom_score_adj` 1000 hold memory: the kernel kills children one after the
/// other, all triggered by the trigger. Each kill is one record naming the
/// trigger (a per-trigger map, as in Datadog's check, loses all but one).
///
/// The set-up leaves the kernel only right answers, however fast the
/// machine. The trigger allocates a fixed amount, chosen from the cgroup's
/// usage once the children hold their memory, that overshoots the limit by
/// more than one child frees and less than two free: at least two kills are
/// needed, and after two the trigger fits with room to spare (it never
/// races the kills by watching for exits). Every child outscores the
/// trigger (adj 1000 adds the whole limit). And there are two children to
/// spare: with only the two that must die, the kernel killed the trigger
/// too in 5 of 40 runs here, right after the second kill, with the trigger's
/// memory unchanged since then and the cgroup's usage still counting the
/// second victim's memory (a victim leaves the OOM killer's list before all
/// of its memory is uncharged). With spares, such a kill would take a spare,
/// never the trigger (80 of 80 runs here needed exactly two kills).
///
/// argv: the cgroup's usage file, its limit file. Prints the children's
/// pids, then on a second line the pids of those that were OOM-killed (the
/// survivors are stopped with SIGTERM, so each exit says which it was).
const TRIGGER_AND_FOUR_CHILDREN: &str = r#"
import os, signal, sys, time
MIB = 1 << 20
HOLD = 32 * MIB       # each child frees this, plus at most ~8 MiB of its own
OVERSHOOT = 52 * MIB  # > one child's memory, < two children's
def child():
    with open("/proc/self/oom_score_adj", "w") as f:
        f.write("1000")
    hold = b"c" * HOLD
    os.write(w, b"x")
    time.sleep(600)
    os._exit(0)
r, w = os.pipe()
kids = []
for _ in range(4):
    pid = os.fork()
    if pid == 0:
        child()
    kids.append(pid)
for _ in kids:
    os.read(r, 1)
print(" ".join(str(k) for k in kids), flush=True)
usage = int(open(sys.argv[1]).read())
limit = int(open(sys.argv[2]).read())
a = []
for _ in range((limit - usage + OVERSHOOT) // MIB):
    a.append(b"p" * MIB)
killed = []
for k in kids:
    try:
        os.kill(k, signal.SIGTERM)
    except ProcessLookupError:
        pass
for k in kids:
    _, status = os.waitpid(k, 0)
    if os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL:
        killed.append(k)
print(" ".join(str(k) for k in killed), flush=True)
if len(killed) < 2:
    sys.exit("only %d children were OOM-killed" % len(killed))
"#;

/// The limit of [`kills_by_one_trigger_are_one_record_each`]' cgroup: room
/// for the trigger's interpreter and the four children's memory below it.
const TWO_KILLS_LIMIT_BYTES: u64 = 256 * 1024 * 1024;

#[tokio::test(flavor = "multi_thread")]
async fn kills_by_one_trigger_are_one_record_each() {
    const TEST: &str = "kills_by_one_trigger_are_one_record_each";
    if !is_root() {
        return skip(TEST, "needs root (eBPF, /dev/kmsg, memory cgroups)");
    }
    let _slot = common::oom::oom_test_slot().await;
    let Some(cgroup) = MemoryCgroup::create(TWO_KILLS_LIMIT_BYTES).expect("create the test cgroup")
    else {
        return skip(TEST, "no memory cgroup controller to contain an OOM kill");
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("out.jsonl");
    let (mut agent, _) = start_agent(&out, "auto", None);

    let procs = cgroup.path().join("cgroup.procs");
    let (usage, limit) = cgroup.usage_and_limit_files();
    let output = Command::new("sh")
        .arg("-c")
        .arg(r#"set -e; echo $$ > "$1"; exec python3 -c "$2" "$3" "$4""#)
        .arg("sh")
        .arg(&procs)
        .arg(TRIGGER_AND_FOUR_CHILDREN)
        .arg(&usage)
        .arg(&limit)
        .output()
        .expect("run the trigger");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "trigger: {:?}\n{stdout}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    let pids = |line: Option<&str>| -> Vec<i32> {
        line.unwrap_or_default()
            .split_whitespace()
            .filter_map(|p| p.parse().ok())
            .collect()
    };
    let mut lines = stdout.lines();
    let kids = pids(lines.next());
    let killed = pids(lines.next());
    assert_eq!(kids.len(), 4, "{stdout}");
    assert!(killed.len() >= 2, "{stdout}");

    let records = oom_records(&out, killed.len(), &agent);
    let mut triggers = Vec::new();
    for kid in &killed {
        let r = record_for(&records, *kid);
        assert_eq!(
            attr_str(r, "oom.victim.oom_score_adj").as_deref(),
            Some("1000")
        );
        assert_eq!(attr_str(r, "oom.source").as_deref(), Some("ebpf"));
        assert_eq!(attr_str(r, "oom.victim.exiting").as_deref(), Some("false"));
        assert_memory_matches_kernel(r, *kid);
        triggers.push(attr_str(r, "oom.trigger.pid").expect("trigger pid"));
    }
    assert!(
        triggers.iter().all(|t| *t == triggers[0]),
        "every kill was triggered by the trigger: {triggers:?}"
    );
    assert!(
        !kids.iter().any(|k| k.to_string() == triggers[0]),
        "the trigger is the parent, not a victim"
    );
    // Other tests kill in their own cgroups at the same time: count ours.
    let ours = records
        .iter()
        .filter(|r| attr_str(r, "oom.victim.cgroup") == Some(cgroup.cgroup_path()))
        .count();
    assert_eq!(
        ours,
        killed.len(),
        "one record per victim, no duplicates: {records:#?}"
    );
    let (status, clean) = agent.stop(TIMEOUT);
    assert!(clean && status.success(), "{}", agent.output());
}

/// Kills in several cgroups at once: every one reported once.
#[tokio::test(flavor = "multi_thread")]
async fn kills_in_quick_succession_are_each_reported_once() {
    const TEST: &str = "kills_in_quick_succession_are_each_reported_once";
    if !is_root() {
        return skip(TEST, "needs root (eBPF, /dev/kmsg, memory cgroups)");
    }
    let _slot = common::oom::oom_test_slot().await;
    let mut cgroups = Vec::new();
    for _ in 0..4 {
        match MemoryCgroup::create(OOM_LIMIT_BYTES).expect("create a test cgroup") {
            Some(c) => cgroups.push(c),
            None => return skip(TEST, "no memory cgroup controller to contain an OOM kill"),
        }
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("out.jsonl");
    let (mut agent, _) = start_agent(&out, "auto", None);
    let mut children: Vec<_> = cgroups
        .iter()
        .map(|c| c.spawn_allocator().expect("spawn"))
        .collect();
    let pids: Vec<i32> = children.iter().map(common::oom::OomChild::pid).collect();
    for c in &mut children {
        c.wait().expect("wait");
    }
    let records = oom_records(&out, pids.len(), &agent);
    for pid in &pids {
        let r = record_for(&records, *pid);
        assert_memory_matches_kernel(r, *pid);
    }
    let names: Vec<String> = cgroups.iter().map(MemoryCgroup::cgroup_path).collect();
    let ours = records
        .iter()
        .filter(|r| attr_str(r, "oom.victim.cgroup").is_some_and(|c| names.contains(&c)))
        .count();
    assert_eq!(ours, pids.len(), "one record per kill: {records:#?}");
    let (status, clean) = agent.stop(TIMEOUT);
    assert!(clean && status.success(), "{}", agent.output());
}

/// With eBPF forced off, the kernel report alone gives the same facts.
#[tokio::test(flavor = "multi_thread")]
async fn kmsg_fallback_gives_the_same_facts() {
    const TEST: &str = "kmsg_fallback_gives_the_same_facts";
    if !is_root() {
        return skip(TEST, "needs root (/dev/kmsg, memory cgroups)");
    }
    let _slot = common::oom::oom_test_slot().await;
    let Some(cgroup) = MemoryCgroup::create(OOM_LIMIT_BYTES).expect("create the test cgroup")
    else {
        return skip(TEST, "no memory cgroup controller to contain an OOM kill");
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("out.jsonl");
    let (mut agent, _) = start_agent(&out, "kmsg", None);
    let mut child = cgroup.spawn_allocator().expect("spawn");
    let pid = child.pid();
    child.wait().expect("wait");

    let records = oom_records(&out, 1, &agent);
    let r = record_for(&records, pid);
    assert_eq!(attr_str(r, "oom.source").as_deref(), Some("kmsg"));
    assert_eq!(attr_str(r, "oom.victim.comm").as_deref(), Some("python3"));
    assert_eq!(
        attr_str(r, "oom.constraint").as_deref(),
        Some("CONSTRAINT_MEMCG")
    );
    assert_eq!(attr_str(r, "oom.trigger_type").as_deref(), Some("cgroup"));
    assert_eq!(attr_str(r, "oom.memcg"), Some(cgroup.cgroup_path()));
    assert_eq!(
        attr_str(r, "oom.memcg.limit"),
        Some(OOM_LIMIT_BYTES.to_string())
    );
    assert_eq!(attr_str(r, "oom.trigger.comm").as_deref(), Some("python3"));
    assert_eq!(attr_str(r, "oom.trigger.pid"), Some(pid.to_string()));
    assert_eq!(attr_str(r, "process.real_user.id").as_deref(), Some("0"));
    assert_memory_matches_kernel(r, pid);
    let (status, clean) = agent.stop(TIMEOUT);
    assert!(clean && status.success(), "{}", agent.output());
}

/// Without eBPF the process connector's table keeps who the victim was. The
/// agent is stopped (SIGSTOP) once it has read the victim's exec, until the
/// victim was killed and reaped: on SIGCONT its record still has the
/// command line, executable, parent and start, which /proc no longer had.
#[tokio::test(flavor = "multi_thread")]
async fn kmsg_mode_records_who_a_victim_gone_meanwhile_was() {
    const TEST: &str = "kmsg_mode_records_who_a_victim_gone_meanwhile_was";
    if !is_root() {
        return skip(
            TEST,
            "needs root (/dev/kmsg, memory cgroups, the process connector)",
        );
    }
    let _slot = common::oom::oom_test_slot().await;
    let Some(cgroup) = MemoryCgroup::create(OOM_LIMIT_BYTES).expect("create the test cgroup")
    else {
        return skip(TEST, "no memory cgroup controller to contain an OOM kill");
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("out.jsonl");
    let (mut agent, _) = start_agent_configured(
        &out,
        "kmsg",
        None,
        free_port(),
        "    process_tracking: netlink\n",
    );
    let before = std::time::SystemTime::now();
    let (mut victim, argv) = cgroup
        .spawn_gated_allocator(&marker_args(4))
        .expect("spawn the allocator");
    let pid = victim.child.pid();
    victim
        .wait_until_gated()
        .expect("the allocator at its gate");
    wait_for_process_events_read(agent.pid());
    killed_while_the_agent_is_stopped(&agent, &mut victim, pid);

    let records = oom_records(&out, 1, &agent);
    let r = record_for(&records, pid);
    assert_eq!(attr_str(r, "oom.source").as_deref(), Some("kmsg"), "{r:#}");
    assert_eq!(
        attr_str(r, "process.command_line"),
        Some(argv.join(" ")),
        "{r:#}"
    );
    let python = std::fs::canonicalize(&argv[0]).expect("the interpreter's path");
    assert_eq!(
        attr_str(r, "process.executable.path").as_deref(),
        python.to_str(),
        "{r:#}"
    );
    // `sh` exec'd the allocator: its parent is this test.
    assert_eq!(
        attr_str(r, "process.parent_pid"),
        Some(std::process::id().to_string()),
        "{r:#}"
    );
    let created = attr_str(r, "process.creation.time").expect("process.creation.time");
    let created =
        time::OffsetDateTime::parse(&created, &time::format_description::well_known::Rfc3339)
            .expect("ISO 8601");
    // /proc's start is in clock ticks (10 ms at 100 Hz) after a boot time
    // the agent derived from two clocks: a second covers both.
    let before = time::OffsetDateTime::from(before) - time::Duration::seconds(1);
    assert!(
        created >= before && created <= time::OffsetDateTime::now_utc(),
        "{created} not in [{before}, now]"
    );
    let (status, clean) = agent.stop(TIMEOUT);
    assert!(clean && status.success(), "{}", agent.output());
}

/// Until the agent's process-events thread has read every event queued so
/// far: it sleeps in recvfrom(2) only when its socket's queue is empty
/// (/proc/PID/task/TID/syscall names the syscall a task is blocked in).
fn wait_for_process_events_read(agent: u32) {
    let tasks = format!("/proc/{agent}/task");
    let deadline = std::time::Instant::now() + TIMEOUT;
    let thread = loop {
        let found = std::fs::read_dir(&tasks)
            .expect("the agent's tasks")
            .filter_map(Result::ok)
            .find(|t| {
                std::fs::read_to_string(t.path().join("comm"))
                    .is_ok_and(|c| c.trim() == "oom-proc-events")
            });
        if let Some(t) = found {
            break t.path();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the agent has no oom-proc-events thread"
        );
        std::thread::sleep(Duration::from_millis(10));
    };
    let recvfrom = libc::SYS_recvfrom.to_string();
    loop {
        let syscall = std::fs::read_to_string(thread.join("syscall")).unwrap_or_default();
        if syscall.split_whitespace().next() == Some(recvfrom.as_str()) {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the process-events thread never waited for more: {syscall}"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// `oomscope events --json` connected to a running agent prints the kill,
/// live, with the same facts as the OTLP record.
#[tokio::test(flavor = "multi_thread")]
async fn oomscope_events_streams_a_real_kill() {
    use tokio::io::AsyncBufReadExt as _;
    const TEST: &str = "oomscope_events_streams_a_real_kill";
    if !is_root() {
        return skip(TEST, "needs root (eBPF, /dev/kmsg, memory cgroups)");
    }
    let _slot = common::oom::oom_test_slot().await;
    let Some(cgroup) = MemoryCgroup::create(OOM_LIMIT_BYTES).expect("create the test cgroup")
    else {
        return skip(TEST, "no memory cgroup controller to contain an OOM kill");
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("out.jsonl");
    let events_port = free_port();
    let (mut agent, _) = start_agent_with_events(&out, "auto", None, events_port);
    let mut events = tokio::process::Command::new(env!("CARGO_BIN_EXE_oomscope"))
        .args([
            "events",
            "--json",
            "--endpoint",
            &format!("127.0.0.1:{events_port}"),
        ])
        .arg("--cgroup")
        .arg(cgroup.cgroup_path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start oomscope events");
    let stdout = events.stdout.take().expect("stdout");
    // Events are live, not replayed: kill only once the subscription stands.
    let stderr = events.stderr.take().expect("stderr");
    let mut stderr_lines = tokio::io::BufReader::new(stderr).lines();
    loop {
        let line = tokio::time::timeout(TIMEOUT, stderr_lines.next_line())
            .await
            .expect("oomscope events connects within the timeout")
            .expect("read stderr")
            .expect("oomscope events ended before connecting");
        if line.starts_with("connected to the agent") {
            break;
        }
    }

    let mut child = cgroup.spawn_allocator().expect("spawn");
    let pid = child.pid();
    child.wait().expect("wait");

    let mut lines = tokio::io::BufReader::new(stdout).lines();
    let line = tokio::time::timeout(TIMEOUT, lines.next_line())
        .await
        .expect("a kill within the timeout")
        .expect("read")
        .expect("a line");
    let kill: serde_json::Value = serde_json::from_str(&line).expect("JSON line");
    assert_eq!(kill["victim"]["pid"], pid, "{kill:#}");
    assert_eq!(kill["victim"]["comm"], "python3");
    assert_eq!(kill["source"], "ebpf");
    assert_eq!(kill["scope"]["constraint"], "CONSTRAINT_MEMCG");
    assert_eq!(kill["scope"]["memcg"], cgroup.cgroup_path());
    assert!(kill["kernel_time_ns"].as_u64().is_some_and(|t| t > 0));
    // Its incident, with the lead-up read right after the kill.
    assert_eq!(
        kill["incident_id"].as_str().map(str::len),
        Some(32),
        "{kill:#}"
    );
    assert_eq!(kill["lead_up"]["cgroup"], cgroup.cgroup_path(), "{kill:#}");
    let line = killed_line(pid, TIMEOUT);
    assert_eq!(kill["victim"]["anon_rss_bytes"], line.anon_rss_kb * 1024);
    let _ = events.kill().await;
    let (status, clean) = agent.stop(TIMEOUT);
    assert!(clean && status.success(), "{}", agent.output());
}

/// One allocator's kill: its record, its argv and when it was spawned.
struct KilledAllocator {
    record: serde_json::Value,
    argv: Vec<String>,
    spawned: std::time::SystemTime,
}

impl KilledAllocator {
    fn command_line(&self) -> Option<String> {
        attr_str(&self.record, "process.command_line")
    }
}

/// The record's `process.parent_pid` is this test's pid (the allocator's
/// `sh`, which exec'd it, was spawned here) and its
/// `process.creation.time` is between a second before `spawned` and now
/// (/proc's start is in clock ticks, 10 ms at 100 Hz, and the agent's boot
/// time comes from two clocks: a second covers both).
fn assert_parent_and_start(record: &serde_json::Value, spawned: std::time::SystemTime) {
    assert_eq!(
        attr_str(record, "process.parent_pid"),
        Some(std::process::id().to_string()),
        "{record:#}"
    );
    let created = attr_str(record, "process.creation.time").expect("process.creation.time");
    let created =
        time::OffsetDateTime::parse(&created, &time::format_description::well_known::Rfc3339)
            .expect("ISO 8601");
    let earliest = time::OffsetDateTime::from(spawned) - time::Duration::seconds(1);
    assert!(
        created >= earliest && created <= time::OffsetDateTime::now_utc(),
        "{created} not in [{earliest}, now]"
    );
}

/// Kills `rounds` allocators one after the other, each with `extra`
/// arguments, and returns each kill's record with the allocator's argv.
/// The agent reads /proc from `proc_path` (`None`: the real one).
async fn kills_of_allocators(
    test: &str,
    rounds: usize,
    extra: &[String],
    proc_path: Option<&Path>,
) -> Option<Vec<KilledAllocator>> {
    if !is_root() {
        skip(test, "needs root (eBPF, /dev/kmsg, memory cgroups)");
        return None;
    }
    let _slot = common::oom::oom_test_slot().await;
    let Some(cgroup) = MemoryCgroup::create(OOM_LIMIT_BYTES).expect("create the test cgroup")
    else {
        skip(test, "no memory cgroup controller to contain an OOM kill");
        return None;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("out.jsonl");
    let oom_extra = proc_path
        .map(|p| format!("    proc_path: \"{}\"\n", p.display()))
        .unwrap_or_default();
    let (mut agent, _) = start_agent_configured(&out, "ebpf", None, free_port(), &oom_extra);
    let mut kills = Vec::new();
    for _ in 0..rounds {
        let spawned = std::time::SystemTime::now();
        let (mut child, argv) = cgroup
            .spawn_allocator_with_args(extra)
            .expect("spawn the allocator");
        let pid = child.pid();
        let status = child.wait().expect("wait");
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&status),
            Some(libc::SIGKILL),
            "the allocator was OOM-killed"
        );
        kills.push((pid, argv, spawned));
    }
    let records = oom_records(&out, rounds, &agent);
    let kills = kills
        .into_iter()
        .map(|(pid, argv, spawned)| {
            let record = record_for(&records, pid).clone();
            assert_eq!(
                attr_str(&record, "oom.source").as_deref(),
                Some("ebpf"),
                "{record:#}"
            );
            KilledAllocator {
                record,
                argv,
                spawned,
            }
        })
        .collect();
    let (status, clean) = agent.stop(TIMEOUT);
    assert!(clean && status.success(), "{}", agent.output());
    Some(kills)
}

/// Arguments that identify a round and make the command line longer than
/// the kernel's first read of the victim's stack could race for.
fn marker_args(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("--marker-{i}=value{i}")).collect()
}

/// The victim dies within microseconds of being marked and its memory goes
/// with it; /proc is read when the event arrives, often too late. Over
/// several kills in a row, every record still has the exact command line,
/// parent and start (from /proc or from the exec hook).
#[tokio::test(flavor = "multi_thread")]
async fn every_kill_has_its_exact_command_line() {
    let Some(kills) = kills_of_allocators(
        "every_kill_has_its_exact_command_line",
        5,
        &marker_args(3),
        None,
    )
    .await
    else {
        return;
    };
    for kill in kills {
        assert_eq!(kill.command_line(), Some(kill.argv.join(" ")));
        assert_parent_and_start(&kill.record, kill.spawned);
    }
}

/// /proc gives nothing (an empty `proc_path`), as when every victim has
/// exited before it is read: the command line, the executable (the path
/// passed to exec: the interpreter's path as `sh` exec'd it, argv[0]), the
/// parent and the start come from the exec hook alone, exact.
#[tokio::test(flavor = "multi_thread")]
async fn without_proc_the_exec_hook_gives_the_exact_command_line() {
    let empty_proc = tempfile::tempdir().expect("tempdir");
    let Some(kills) = kills_of_allocators(
        "without_proc_the_exec_hook_gives_the_exact_command_line",
        5,
        &marker_args(3),
        Some(empty_proc.path()),
    )
    .await
    else {
        return;
    };
    for kill in kills {
        assert_eq!(kill.command_line(), Some(kill.argv.join(" ")));
        assert_eq!(
            attr_str(&kill.record, "process.executable.path").as_ref(),
            Some(&kill.argv[0]),
            "{:#}",
            kill.record
        );
        assert_parent_and_start(&kill.record, kill.spawned);
    }
}

/// An argv longer than the exec hook's bound (512 bytes, NUL-separated) is
/// cut at the bound: the command line is exactly its first 512 bytes, the
/// last argument cut, nothing else.
#[tokio::test(flavor = "multi_thread")]
async fn a_long_command_line_from_the_exec_hook_is_cut_not_garbled() {
    const BOUND: usize = 512;
    let empty_proc = tempfile::tempdir().expect("tempdir");
    let Some(kills) = kills_of_allocators(
        "a_long_command_line_from_the_exec_hook_is_cut_not_garbled",
        1,
        &marker_args(60),
        Some(empty_proc.path()),
    )
    .await
    else {
        return;
    };
    for kill in kills {
        let (got, argv) = (kill.command_line(), kill.argv);
        let mut recorded: Vec<u8> = argv.iter().flat_map(|a| a.bytes().chain([0])).collect();
        assert!(recorded.len() > BOUND, "the argv must exceed the bound");
        recorded.truncate(BOUND);
        let expected = recorded
            .split(|b| *b == 0)
            .filter(|a| !a.is_empty())
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect::<Vec<_>>()
            .join(" ");
        assert!(argv.join(" ").starts_with(&expected));
        assert_eq!(got, Some(expected));
    }
}

/// The agent is stopped (SIGSTOP: as slow as under heavy memory pressure)
/// from after the victim's exec until the victim was killed and reaped; on
/// SIGCONT its record still has the exact command line, the executable (the
/// path `sh` exec'd: the interpreter's, argv[0], links not resolved), the
/// parent and the start (the exec hook keeps them past the victim's exit;
/// /proc has nothing by then).
#[tokio::test(flavor = "multi_thread")]
async fn a_stopped_agent_still_gives_the_command_line_of_a_victim_gone_meanwhile() {
    const TEST: &str = "a_stopped_agent_still_gives_the_command_line_of_a_victim_gone_meanwhile";
    if !is_root() {
        return skip(TEST, "needs root (eBPF, /dev/kmsg, memory cgroups)");
    }
    let _slot = common::oom::oom_test_slot().await;
    let Some(cgroup) = MemoryCgroup::create(OOM_LIMIT_BYTES).expect("create the test cgroup")
    else {
        return skip(TEST, "no memory cgroup controller to contain an OOM kill");
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("out.jsonl");
    let (mut agent, _) = start_agent_configured(&out, "ebpf", None, free_port(), "");
    let spawned = std::time::SystemTime::now();
    let (mut victim, argv) = cgroup
        .spawn_gated_allocator(&marker_args(3))
        .expect("spawn the allocator");
    let pid = victim.child.pid();
    killed_while_the_agent_is_stopped(&agent, &mut victim, pid);
    let records = oom_records(&out, 1, &agent);
    let record = record_for(&records, pid);
    assert_eq!(
        attr_str(record, "oom.source").as_deref(),
        Some("ebpf"),
        "{record:#}"
    );
    assert_eq!(
        attr_str(record, "process.command_line"),
        Some(argv.join(" ")),
        "{record:#}"
    );
    assert_eq!(
        attr_str(record, "process.executable.path").as_ref(),
        Some(&argv[0]),
        "{record:#}"
    );
    assert_parent_and_start(record, spawned);
    let (status, clean) = agent.stop(TIMEOUT);
    assert!(clean && status.success(), "{}", agent.output());
}

/// The `oom/mark_victim` format of kernels before 5.18 (and of some
/// backports): `pid` alone.
const PID_ONLY_FORMAT: &str = "name: mark_victim
ID: 412
format:
\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;
\tfield:unsigned char common_flags;\toffset:2;\tsize:1;\tsigned:0;
\tfield:unsigned char common_preempt_count;\toffset:3;\tsize:1;\tsigned:0;
\tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;

\tfield:int pid;\toffset:8;\tsize:4;\tsigned:1;

print fmt: \"pid=%d\", REC->pid
";

/// Runs the binary (`$2`) in a private mount namespace where this kernel's
/// `oom/mark_victim` format file reads as the file `$1` (a bind mount over
/// it): a kernel whose tracepoint lacks fields.
const FORMAT_BOUND_OVER: &str = r#"set -e
mountpoint -q /sys/kernel/tracing || mount -t tracefs nodev /sys/kernel/tracing
mount --bind "$1" /sys/kernel/tracing/events/oom/mark_victim/format
if grep -q total_vm /sys/kernel/tracing/events/oom/mark_victim/format; then
    echo "the format still has total_vm" >&2; exit 3
fi
bin=$2; shift 2
exec "$bin" "$@"
"#;

/// A kernel whose tracepoint has only `pid` (its format file replaced in a
/// private mount namespace): doctor names the absent fields, the agent
/// warns once and still loads eBPF, and a contained kill of a victim gone
/// from /proc before the agent reads it is one complete record: its figures
/// from the kernel's report, equal to its line, its command line from the
/// exec hook, matched once the report named the victim.
#[tokio::test(flavor = "multi_thread")]
async fn a_tracepoint_without_fields_degrades_to_the_kernel_report() {
    const TEST: &str = "a_tracepoint_without_fields_degrades_to_the_kernel_report";
    if !is_root() {
        return skip(TEST, "needs root (eBPF, mount namespaces, memory cgroups)");
    }
    let unshare_works = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "true"])
        .status()
        .is_ok_and(|s| s.success());
    if !unshare_works {
        return skip(TEST, "unshare --mount (util-linux) is missing or refused");
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let format = dir.path().join("format");
    std::fs::write(&format, PID_ONLY_FORMAT).expect("write the format");
    let format_arg = format.to_str().expect("a UTF-8 temp path");
    let wrapper = [
        "unshare",
        "--mount",
        "--propagation",
        "private",
        "--",
        "sh",
        "-c",
        FORMAT_BOUND_OVER,
        "sh",
        format_arg,
    ];

    let doctor = Command::new(wrapper[0])
        .args(&wrapper[1..])
        .arg(env!("CARGO_BIN_EXE_oomscope"))
        .args(["doctor", "--json"])
        .output()
        .expect("run doctor");
    let report: serde_json::Value = serde_json::from_slice(&doctor.stdout).unwrap_or_else(|e| {
        panic!(
            "doctor printed no JSON ({e}): {}",
            String::from_utf8_lossy(&doctor.stderr)
        )
    });
    let absent = "comm, total_vm, anon_rss, file_rss, shmem_rss, uid, pgtables, oom_score_adj";
    let tracepoint = report["checks"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["name"] == "tracepoint"))
        .expect("the tracepoint check");
    assert_eq!(tracepoint["status"], "LIMITED", "{report:#}");
    assert!(
        tracepoint["reason"]
            .as_str()
            .is_some_and(|r| r.ends_with(&format!("absent fields: {absent}"))),
        "{tracepoint}"
    );
    assert_eq!(report["source"], "ebpf", "{report:#}");
    assert!(
        report["missing_for_full_data"][0]
            .as_str()
            .is_some_and(|m| m.starts_with(&format!("tracepoint fields {absent}"))),
        "{report:#}"
    );

    let _slot = common::oom::oom_test_slot().await;
    let Some(cgroup) = MemoryCgroup::create(OOM_LIMIT_BYTES).expect("create the test cgroup")
    else {
        return skip(TEST, "no memory cgroup controller to contain an OOM kill");
    };
    let out = dir.path().join("out.jsonl");
    let health = free_port();
    let config = format!(
        r#"
receivers:
  oom: {{ mode: auto, events: null }}
processors:
  batch: {{ timeout: 200ms }}
exporters:
  file: {{ path: "{out}" }}
extensions:
  health_check: {{ endpoint: "127.0.0.1:{health}" }}
service:
  extensions: [health_check]
  telemetry: {{ metrics: {{ address: "" }} }}
  oom_score_adj: null
  pipelines:
    logs: {{ receivers: [oom], processors: [batch], exporters: [file] }}
"#,
        out = out.display()
    );
    let mut agent = Oomscope::start_wrapped(&wrapper, &config);
    agent.wait_healthy(health, TIMEOUT);

    // The agent stopped from after the exec until the victim was reaped:
    // /proc has nothing of it, and the event has no comm to match the exec
    // hook's entry with; the report names it.
    let (mut victim, argv) = cgroup
        .spawn_gated_allocator(&marker_args(2))
        .expect("spawn the allocator");
    let pid = victim.child.pid();
    victim
        .wait_until_gated()
        .expect("the allocator at its gate");
    killed_while_the_agent_is_stopped(&agent, &mut victim, pid);
    let records = oom_records(&out, 1, &agent);
    let r = record_for(&records, pid);
    assert_eq!(attr_str(r, "oom.source").as_deref(), Some("ebpf"), "{r:#}");
    assert_memory_matches_kernel(r, pid);
    assert_eq!(
        attr_str(r, "process.real_user.id").as_deref(),
        Some("0"),
        "{r:#}"
    );
    assert!(attr_str(r, "oom.victim.oom_score_adj").is_some(), "{r:#}");
    assert_eq!(
        attr_str(r, "oom.constraint").as_deref(),
        Some("CONSTRAINT_MEMCG")
    );
    assert_eq!(attr_str(r, "oom.memcg"), Some(cgroup.cgroup_path()));
    assert_eq!(
        attr_str(r, "oom.memcg.limit"),
        Some(OOM_LIMIT_BYTES.to_string())
    );
    assert_eq!(attr_str(r, "oom.trigger.pid"), Some(pid.to_string()));
    assert_eq!(
        attr_str(r, "process.command_line"),
        Some(argv.join(" ")),
        "{r:#}"
    );
    let (status, clean) = agent.stop(TIMEOUT);
    let output = agent.output();
    assert!(clean && status.success(), "{output}");
    let warnings: Vec<&str> = output
        .lines()
        .filter(|l| l.contains("WARN") && l.contains("tracepoint lacks fields"))
        .collect();
    assert_eq!(warnings.len(), 1, "{output}");
    assert!(warnings[0].contains(absent), "{output}");
    assert!(!output.contains("panicked"), "{output}");
}

/// A victim started before the agent (no exec for the hook to see): the
/// agent's one /proc scan at start put it in the exec hook's map. The agent
/// is stopped (SIGSTOP) until the victim was killed and reaped; on SIGCONT
/// its record has the exact command line, the executable (as /proc's `exe`
/// names it: links resolved), the parent and the start.
#[tokio::test(flavor = "multi_thread")]
async fn a_victim_started_before_the_agent_still_gives_its_command_line() {
    const TEST: &str = "a_victim_started_before_the_agent_still_gives_its_command_line";
    if !is_root() {
        return skip(TEST, "needs root (eBPF, /dev/kmsg, memory cgroups)");
    }
    let _slot = common::oom::oom_test_slot().await;
    let Some(cgroup) = MemoryCgroup::create(OOM_LIMIT_BYTES).expect("create the test cgroup")
    else {
        return skip(TEST, "no memory cgroup controller to contain an OOM kill");
    };
    let spawned = std::time::SystemTime::now();
    let (mut victim, argv) = cgroup
        .spawn_gated_allocator(&marker_args(3))
        .expect("spawn the allocator");
    let pid = victim.child.pid();
    victim
        .wait_until_gated()
        .expect("the allocator at its gate");
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("out.jsonl");
    let (mut agent, _) = start_agent_configured(&out, "ebpf", None, free_port(), "");
    killed_while_the_agent_is_stopped(&agent, &mut victim, pid);
    let records = oom_records(&out, 1, &agent);
    let record = record_for(&records, pid);
    assert_eq!(
        attr_str(record, "oom.source").as_deref(),
        Some("ebpf"),
        "{record:#}"
    );
    assert_eq!(
        attr_str(record, "process.command_line"),
        Some(argv.join(" ")),
        "{record:#}"
    );
    let exe = std::fs::canonicalize(&argv[0]).expect("the interpreter's path");
    assert_eq!(
        attr_str(record, "process.executable.path").as_deref(),
        exe.to_str(),
        "{record:#}"
    );
    assert_parent_and_start(record, spawned);
    let (status, clean) = agent.stop(TIMEOUT);
    assert!(clean && status.success(), "{}", agent.output());
}
