//! The `memory` receiver end to end: the built binary scraping this machine's
//! /proc and a real memory cgroup (a contained OOM kill inside it, never an
//! unbounded allocation), and a recorded cgroup2 host through `root_path`;
//! points read back from the file exporter. The cgroup parts need root and a
//! memory controller and skip with a printed reason without them.

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::free_port;
use common::oom::{CgroupVersion, MemoryCgroup, OOM_LIMIT_BYTES};
use common::oomscope::Oomscope;
use common::otlp::{json_attr, FileContents};
use common::{is_root, skip};

const TIMEOUT: Duration = Duration::from_secs(60);
const MIB: u64 = 1024 * 1024;

/// oomscope with only the memory receiver (`receiver_yaml`: its keys,
/// indented by 4) writing metrics to `out`.
fn start_agent(out: &Path, receiver_yaml: &str) -> Oomscope {
    let health = free_port();
    let config = format!(
        r#"
receivers:
  memory:
{receiver_yaml}
processors:
  batch: {{ timeout: 100ms }}
exporters:
  file: {{ path: "{out}" }}
extensions:
  health_check: {{ endpoint: "127.0.0.1:{health}" }}
service:
  extensions: [health_check]
  telemetry: {{ metrics: {{ address: "" }} }}
  oom_score_adj: null
  pipelines:
    metrics: {{ receivers: [memory], processors: [batch], exporters: [file] }}
"#,
        out = out.display()
    );
    let mut agent = Oomscope::start(&config, &[]);
    agent.wait_healthy(health, TIMEOUT);
    agent
}

/// A point's number: `asInt` (a string in OTLP JSON) or `asDouble`.
fn value(p: &serde_json::Value) -> f64 {
    match &p["asInt"] {
        serde_json::Value::String(s) => s.parse().unwrap_or(f64::NAN),
        serde_json::Value::Number(n) => n.as_f64().unwrap_or(f64::NAN),
        _ => p["asDouble"].as_f64().unwrap_or(f64::NAN),
    }
}

fn attr(p: &serde_json::Value, key: &str) -> Option<String> {
    let v = json_attr(&p["attributes"], key)?;
    v["stringValue"]
        .as_str()
        .map(str::to_string)
        .or_else(|| v["intValue"].as_str().map(str::to_string))
}

/// Points of `metric` with the attributes `attrs`.
fn points<'a>(
    c: &'a FileContents,
    metric: &str,
    attrs: &[(&str, &str)],
) -> Vec<&'a serde_json::Value> {
    c.points
        .iter()
        .filter(|(name, p)| {
            name == metric && attrs.iter().all(|(k, v)| attr(p, k).as_deref() == Some(*v))
        })
        .map(|(_, p)| p)
        .collect()
}

/// Each process resource's attributes and its metrics' points, from the
/// file exporter's lines (the flat `FileContents::points` drops resources).
fn process_points(out: &Path) -> Vec<(BTreeMap<String, String>, String, serde_json::Value)> {
    resource_points(out)
        .into_iter()
        .filter(|(r, _, _)| r.contains_key("process.pid"))
        .collect()
}

/// Every resource's string and int attributes with its metrics' points.
fn resource_points(out: &Path) -> Vec<(BTreeMap<String, String>, String, serde_json::Value)> {
    let text = std::fs::read_to_string(out).unwrap_or_default();
    let mut found = Vec::new();
    for line in text.lines() {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
            break;
        };
        for rm in v["resourceMetrics"].as_array().into_iter().flatten() {
            let resource: BTreeMap<String, String> = rm["resource"]["attributes"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|kv| {
                    let key = kv["key"].as_str()?.to_string();
                    let v = &kv["value"];
                    let value = v["stringValue"]
                        .as_str()
                        .map(str::to_string)
                        .or_else(|| v["intValue"].as_str().map(str::to_string))?;
                    Some((key, value))
                })
                .collect();
            for sm in rm["scopeMetrics"].as_array().into_iter().flatten() {
                for m in sm["metrics"].as_array().into_iter().flatten() {
                    let name = m["name"].as_str().unwrap_or_default().to_string();
                    for kind in ["sum", "gauge"] {
                        for p in m[kind]["dataPoints"].as_array().into_iter().flatten() {
                            found.push((resource.clone(), name.clone(), p.clone()));
                        }
                    }
                }
            }
        }
    }
    found
}

fn mem_total_bytes() -> u64 {
    let meminfo = std::fs::read_to_string("/proc/meminfo").expect("meminfo");
    meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse::<u64>().ok())
        .expect("MemTotal")
        * 1024
}

/// python3 inside `cgroup`: names itself `name` (comm), allocates and
/// touches `mib` MiB, says "ready", sleeps. Killed on drop.
struct Sleeper {
    child: Child,
}

impl Sleeper {
    fn spawn(cgroup: &MemoryCgroup, name: &str, mib: u64, args: &[&str]) -> Sleeper {
        let script = format!(
            "import ctypes, time
ctypes.CDLL(None).prctl(15, b'{name}', 0, 0, 0)
a = bytearray({mib} << 20)
for i in range(0, len(a), 4096): a[i] = 1
print('ready', flush=True)
time.sleep(300)"
        );
        // `set -e`: never run outside the cgroup.
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(r#"set -e; echo $$ > "$1"; shift; exec python3 -c "$@""#)
            .arg("sh")
            .arg(cgroup.path().join("cgroup.procs"))
            .arg(script)
            .args(args)
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn python3");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("read");
        assert_eq!(line.trim(), "ready", "the child did not allocate");
        Sleeper { child }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Sleeper {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// System memory states as the registry defines them (used = MemTotal - MemAvailable); a 64 MiB child's RSS equals its VmRSS and
/// its command line is redacted; its cgroup reports the limit set here, its
/// usage and headroom; a contained OOM kill in a second cgroup shows as that
/// cgroup's `oom_kill` event and in the system's OOM kill counter.
#[tokio::test(flavor = "multi_thread")]
async fn system_process_and_cgroup_figures_match_the_kernel() {
    const TEST: &str = "system_process_and_cgroup_figures_match_the_kernel";
    if !is_root() {
        return skip(TEST, "needs root (memory cgroups)");
    }
    let _slot = common::oom::oom_test_slot().await;
    let Some(home) = MemoryCgroup::create(256 * MIB).expect("create a cgroup") else {
        return skip(TEST, "no memory cgroup controller");
    };
    let oom_cgroup = MemoryCgroup::create(OOM_LIMIT_BYTES)
        .expect("create a cgroup")
        .expect("a second cgroup where the first one could be made");
    let tag = format!("mrt{}", std::process::id() % 100_000);
    let sleeper = Sleeper::spawn(&home, &tag, 64, &["--db-password=hunter2", "--verbose"]);
    let (home_path, oom_path) = (home.cgroup_path(), oom_cgroup.cgroup_path());

    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("out.jsonl");
    let mut agent = start_agent(
        &out,
        &format!(
            "    collection_interval: 1s
    initial_delay: 0s
    pressure: {{ trigger: null }}
    processes:
      include: {{ names: ['^{tag}$'], match_type: regexp }}
    cgroups:
      include: ['/oomscope-test-{pid}-*']
",
            pid = std::process::id()
        ),
    );

    // Wait for a scrape with the child and both cgroups.
    let c = FileContents::wait_for(&out, TIMEOUT, |c| {
        !points(
            c,
            "oomscope.cgroup.memory.limit",
            &[("oomscope.cgroup.path", &oom_path)],
        )
        .is_empty()
            && !points(
                c,
                "oomscope.cgroup.memory.usage",
                &[("oomscope.cgroup.path", &home_path)],
            )
            .is_empty()
            && c.points.iter().any(|(n, _)| n == "process.memory.usage")
    });
    assert!(
        !points(
            &c,
            "oomscope.cgroup.memory.limit",
            &[("oomscope.cgroup.path", &oom_path)]
        )
        .is_empty(),
        "no cgroup points; the agent said:\n{}",
        agent.output()
    );

    // System: one scrape has the registry's four states, and `used` is
    // MemTotal - MemAvailable of that same read.
    let usage = points(&c, "system.memory.usage", &[]);
    let first_time = usage[0]["timeUnixNano"].clone();
    let one_scrape: Vec<_> = usage
        .iter()
        .filter(|p| p["timeUnixNano"] == first_time)
        .collect();
    assert_eq!(one_scrape.len(), 4);
    let used = points(
        &c,
        "system.memory.usage",
        &[("system.memory.state", "used")],
    )
    .into_iter()
    .find(|p| p["timeUnixNano"] == first_time)
    .map(|p| value(p) as u64)
    .expect("used");
    let available = points(&c, "system.memory.linux.available", &[])
        .into_iter()
        .find(|p| p["timeUnixNano"] == first_time)
        .map(|p| value(p) as u64)
        .expect("available");
    assert_eq!(used + available, mem_total_bytes());
    assert_eq!(
        value(points(&c, "system.memory.limit", &[])[0]) as u64,
        mem_total_bytes()
    );

    // The process: RSS as the kernel says now (it sleeps), command line redacted.
    let procs = process_points(&out);
    let mine: Vec<_> = procs
        .iter()
        .filter(|(r, _, _)| r.get("process.pid") == Some(&sleeper.pid().to_string()))
        .collect();
    assert!(!mine.is_empty(), "the child was not reported: {procs:#?}");
    let rss = mine
        .iter()
        .find(|(_, n, _)| n == "process.memory.usage")
        .map(|(_, _, p)| value(p) as u64)
        .expect("process.memory.usage");
    assert_eq!(Some(rss), common::proc_status_bytes(sleeper.pid(), "VmRSS"));
    assert!(rss >= 64 * MIB, "{rss}");
    let resource = &mine[0].0;
    let cmd = resource.get("process.command_line").expect("command line");
    assert!(cmd.ends_with("--db-password=*** --verbose"), "{cmd}");
    assert!(!cmd.contains("hunter2"));
    assert_eq!(resource.get("process.linux.cgroup"), Some(&home_path));
    assert_eq!(
        resource.get("process.owner").map(String::as_str),
        Some("root")
    );

    // The cgroup holding it: the limit set here, usage at least the child's,
    // headroom = limit - usage in the same scrape.
    let limit_file = match home.version() {
        CgroupVersion::V1 => "memory.limit_in_bytes",
        CgroupVersion::V2 => "memory.max",
    };
    let limit: u64 = std::fs::read_to_string(home.path().join(limit_file))
        .expect("limit")
        .trim()
        .parse()
        .expect("number");
    let home_attr = [("oomscope.cgroup.path", home_path.as_str())];
    let limits = points(&c, "oomscope.cgroup.memory.limit", &home_attr);
    assert_eq!(value(limits[0]) as u64, limit);
    assert_eq!(limit, 256 * MIB);
    let usage = points(&c, "oomscope.cgroup.memory.usage", &home_attr);
    let last = usage.last().expect("usage");
    let used = value(last) as u64;
    assert!(used >= 64 * MIB && used <= limit, "{used}");
    let headroom = points(&c, "oomscope.cgroup.memory.headroom", &home_attr)
        .into_iter()
        .find(|p| p["timeUnixNano"] == last["timeUnixNano"])
        .expect("headroom of the same scrape");
    assert_eq!(value(headroom) as u64, limit - used);

    // A contained OOM kill in the other cgroup.
    let oom_attr = [
        ("oomscope.cgroup.path", oom_path.as_str()),
        ("oomscope.cgroup.memory.event", "oom_kill"),
    ];
    let before = points(&c, "oomscope.cgroup.memory.events", &oom_attr);
    assert_eq!(value(before[0]), 0.0, "no kill yet");
    let system_kills_before = value(points(&c, "oomscope.system.memory.oom_kills", &[])[0]);
    let mut child = oom_cgroup.spawn_allocator().expect("spawn the allocator");
    let status = child.wait().expect("wait");
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(libc::SIGKILL),
        "the allocator was OOM-killed"
    );
    // Both counters, each in some scrape: one scrape can read /proc/vmstat
    // before the kill and the cgroup's events after it.
    let c = FileContents::wait_for(&out, TIMEOUT, |c| {
        points(c, "oomscope.cgroup.memory.events", &oom_attr)
            .iter()
            .any(|p| value(p) >= 1.0)
            && points(c, "oomscope.system.memory.oom_kills", &[])
                .iter()
                .any(|p| value(p) > system_kills_before)
    });
    let kills = points(&c, "oomscope.cgroup.memory.events", &oom_attr);
    assert_eq!(
        value(kills.last().expect("events")),
        1.0,
        "one kill; the agent said:\n{}",
        agent.output()
    );
    let system_kills_after = value(
        points(&c, "oomscope.system.memory.oom_kills", &[])
            .last()
            .expect("oom_kills"),
    );
    assert!(system_kills_after > system_kills_before);
    // Counters are cumulative monotonic sums starting before they counted.
    assert!(kills[0]["startTimeUnixNano"].as_str().is_some());
    let (status, clean) = agent.stop(Duration::from_secs(10));
    assert!(clean && status.success(), "{status:?}\n{}", agent.output());
}

/// The "some" stall total of /proc/pressure/memory, microseconds.
fn psi_some_total_us() -> u64 {
    std::fs::read_to_string("/proc/pressure/memory")
        .ok()
        .and_then(|t| {
            t.lines()
                .next()?
                .split_whitespace()
                .find_map(|f| f.strip_prefix("total="))?
                .parse()
                .ok()
        })
        .unwrap_or(0)
}

/// A file of `mib` MiB on disk, not in the page cache (so that reading it
/// inside a memory cgroup charges the cgroup).
fn uncached_file(dir: &Path, mib: usize) -> PathBuf {
    use std::io::Write as _;
    use std::os::fd::AsRawFd as _;
    let path = dir.join("thrash.bin");
    let mut f = std::fs::File::create(&path).expect("create");
    let block: Vec<u8> = (0..1 << 20).map(|i| (i % 251) as u8).collect();
    for _ in 0..mib {
        f.write_all(&block).expect("write");
    }
    f.sync_all().expect("sync");
    // SAFETY: plain syscall on an open descriptor.
    let rc = unsafe { libc::posix_fadvise(f.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
    assert_eq!(rc, 0, "posix_fadvise");
    path
}

/// While the kernel's PSI trigger fires, sampling runs every
/// `trigger.interval` instead of every `collection_interval` (a minute
/// here). Real pressure: a process in a 32 MiB cgroup reads a 128 MiB file
/// over and over until sampling has sped up, so the cgroup keeps reclaiming
/// its page cache (about 40 ms of "some" stall per second on this machine;
/// the trigger asks for 10 ms in 2 s). Before that, a quiet machine must not
/// speed up.
#[tokio::test(flavor = "multi_thread")]
async fn memory_pressure_speeds_sampling_up() {
    const TEST: &str = "memory_pressure_speeds_sampling_up";
    if !is_root() {
        return skip(TEST, "needs root (memory cgroups)");
    }
    if !Path::new("/proc/pressure/memory").exists() {
        return skip(TEST, "no PSI (/proc/pressure/memory)");
    }
    let _slot = common::oom::oom_test_slot().await;
    let Some(cgroup) = MemoryCgroup::create(32 * MIB).expect("create a cgroup") else {
        return skip(TEST, "no memory cgroup controller");
    };
    // On disk (the target directory), not on a tmpfs whose pages are shmem.
    let scratch = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("tempdir");
    let file = uncached_file(scratch.path(), 128);
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("out.jsonl");
    // The machine's stall total from before the receiver's first reading:
    // a firing is checked against that reading, so a stall anywhere after
    // it may speed sampling up.
    let before = psi_some_total_us();
    let mut agent = start_agent(
        &out,
        "    collection_interval: 1m
    initial_delay: 0s
    processes: { enabled: false }
    cgroups: { enabled: false }
    pressure:
      trigger: { stall: 10ms, window: 2s, interval: 500ms, hold: 3s }
",
    );
    let scrapes = |c: &FileContents| points(c, "system.memory.limit", &[]).len();
    FileContents::wait_for(&out, TIMEOUT, |c| scrapes(c) >= 1);
    assert!(
        agent
            .output()
            .contains("memory pressure trigger registered"),
        "{}",
        agent.output()
    );

    // Quiet: the first scrape only, no faster sampling (this kernel fires unprivileged triggers at
    // random in their first windows; the receiver checks each firing
    // against the stall total). Unless something else on the machine
    // stalled meanwhile.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let stalled_us = psi_some_total_us().saturating_sub(before);
    let c = FileContents::read(&out);
    if stalled_us < 10_000 {
        assert_eq!(
            scrapes(&c),
            1,
            "sampling sped up without pressure:\n{}",
            agent.output()
        );
    } else {
        eprintln!("{TEST}: the machine stalled {stalled_us} us meanwhile; quiet check skipped");
    }
    let quiet_scrapes = scrapes(&c);

    // Pressure until sampling has sped up (however much reclaim stall this
    // machine's reads cause per window), then no more.
    let reader = format!(
        "while True:
    with open({:?}, 'rb') as f:
        while f.read(1 << 20): pass",
        file.display().to_string()
    );
    // `set -e`: never run outside the cgroup.
    let mut reader = Command::new("sh")
        .arg("-c")
        .arg(r#"set -e; echo $$ > "$1"; exec python3 -c "$2""#)
        .arg("sh")
        .arg(cgroup.path().join("cgroup.procs"))
        .arg(reader)
        .spawn()
        .expect("run the reader");
    let c = FileContents::wait_for(&out, TIMEOUT, |c| scrapes(c) >= quiet_scrapes + 3);
    let _ = reader.kill();
    let _ = reader.wait();
    assert!(
        scrapes(&c) >= quiet_scrapes + 3,
        "sampling did not speed up ({} scrapes); the agent said:\n{}",
        scrapes(&c),
        agent.output()
    );
    assert!(agent.output().contains("memory pressure is high"));
    let (status, clean) = agent.stop(Duration::from_secs(10));
    assert!(clean && status.success(), "{status:?}\n{}", agent.output());
}

/// `root_path`: a recorded cgroup2 host (tests/fixtures/memory-root) read by
/// the binary: system, process and cgroup figures come from there.
#[tokio::test(flavor = "multi_thread")]
async fn root_path_reads_a_recorded_cgroup2_host() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/memory-root");
    let pressure = root.join("proc/pressure/memory");
    let recorded = std::fs::read_to_string(&pressure).expect("recorded pressure");
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("out.jsonl");
    let mut agent = start_agent(
        &out,
        &format!(
            "    initial_delay: 0s
    root_path: {}
",
            root.display()
        ),
    );
    let c = FileContents::wait_for(&out, TIMEOUT, |c| {
        !points(c, "oomscope.cgroup.memory.limit", &[]).is_empty()
    });
    assert_eq!(
        value(points(&c, "system.memory.limit", &[])[0]) as u64,
        8039204 * 1024
    );
    let ctr = "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod5d1c2b3a_4e5f_4a6b_8c7d_9e0f1a2b3c4d.slice/cri-containerd-8a3f9d2c4b1e6f70a9b8c7d6e5f40312a1b2c3d4e5f60718293a4b5c6d7e8f90.scope";
    let limit = points(
        &c,
        "oomscope.cgroup.memory.limit",
        &[("oomscope.cgroup.path", ctr)],
    );
    assert_eq!(value(limit[0]) as u64, 268435456);
    // The container is the resource of its cgroup's points, named from the
    // recorded kubelet log links.
    let ctr_resource = resource_points(&out)
        .into_iter()
        .find(|(_, name, p)| {
            name == "oomscope.cgroup.memory.limit"
                && attr(p, "oomscope.cgroup.path").as_deref() == Some(ctr)
        })
        .map(|(r, _, _)| r)
        .expect("the container's limit");
    assert_eq!(
        ctr_resource.get("container.id").map(String::as_str),
        Some("8a3f9d2c4b1e6f70a9b8c7d6e5f40312a1b2c3d4e5f60718293a4b5c6d7e8f90")
    );
    assert_eq!(
        ctr_resource.get("k8s.pod.name").map(String::as_str),
        Some("cart-7d9f")
    );
    assert_eq!(
        ctr_resource.get("k8s.namespace.name").map(String::as_str),
        Some("shop")
    );
    assert_eq!(
        ctr_resource.get("k8s.container.name").map(String::as_str),
        Some("app")
    );
    let procs = process_points(&out);
    let java = procs
        .iter()
        .find(|(r, _, _)| r.get("process.pid").map(String::as_str) == Some("4242"))
        .expect("the recorded JVM");
    assert_eq!(
        java.0.get("k8s.pod.uid").map(String::as_str),
        Some("5d1c2b3a-4e5f-4a6b-8c7d-9e0f1a2b3c4d")
    );
    let (status, clean) = agent.stop(Duration::from_secs(10));
    assert!(clean && status.success(), "{status:?}\n{}", agent.output());
    // The PSI trigger is for procfs only: a recorded file is not written to.
    assert_eq!(
        std::fs::read_to_string(&pressure).expect("recorded pressure"),
        recorded
    );
}
