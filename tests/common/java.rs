//! A real Java incident for tests: a JVM in a memory cgroup that fills its
//! heap until `OutOfMemoryError` (printed to a log file it holds open), then,
//! once the test says so, touches direct buffers until the kernel OOM-kills
//! it. Bounded: the cgroup's limit contains it, and it stops by itself
//! after 2 GiB.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use super::oom::{oom_test_slot, MemoryCgroup, OomSlot};
use super::{is_root, skip};

/// Room for the JVM (a 32 MiB heap and the JVM itself) but not for the
/// direct buffers it allocates after its `OutOfMemoryError`.
pub const JAVA_LIMIT_BYTES: u64 = 192 * 1024 * 1024;

const SAMPLE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(120);

/// Fills its heap until `OutOfMemoryError`, prints it, lets the heap go,
/// waits for the file named by its argument (the test creates it once the
/// message reached the agent's output), then touches direct buffers
/// until the kernel kills it (bounded: 2 GiB at most, far above the
/// cgroup's limit).
const JAVA_SOURCE: &str = r#"import java.nio.ByteBuffer;
import java.nio.file.Files;
import java.nio.file.Paths;
import java.util.ArrayList;
import java.util.List;

public class HeapThenNative {
    public static void main(String[] args) throws Exception {
        List<long[]> heap = new ArrayList<>();
        try {
            while (true) {
                heap.add(new long[1 << 16]);
            }
        } catch (OutOfMemoryError e) {
            heap = null;
            e.printStackTrace();
            System.err.flush();
        }
        while (!Files.exists(Paths.get(args[0]))) {
            Thread.sleep(20);
        }
        List<ByteBuffer> direct = new ArrayList<>();
        for (int i = 0; i < 2048; i++) {
            ByteBuffer b = ByteBuffer.allocateDirect(1 << 20);
            for (int j = 0; j < b.capacity(); j += 4096) {
                b.put(j, (byte) 1);
            }
            direct.add(b);
        }
        System.exit(3);
    }
}
"#;

pub fn java_usable(test: &str) -> bool {
    for tool in ["java", "javac"] {
        match Command::new(tool)
            .arg("-version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
        {
            Ok(s) if s.success() => {}
            Ok(s) => {
                skip(test, format!("`{tool} -version` failed: {s}"));
                return false;
            }
            Err(e) => {
                skip(test, format!("{tool} is not usable: {e}"));
                return false;
            }
        }
    }
    true
}

/// Compiles the program (outside the cgroup: javac needs more memory than
/// the program may use).
pub fn compile(dir: &Path) -> PathBuf {
    let classes = dir.join("classes");
    std::fs::create_dir_all(&classes).expect("classes dir");
    let source = dir.join("HeapThenNative.java");
    std::fs::write(&source, JAVA_SOURCE).expect("write the source");
    let status = Command::new("javac")
        .arg("-d")
        .arg(&classes)
        .arg(&source)
        .status()
        .expect("run javac");
    assert!(status.success(), "javac failed: {status}");
    classes
}

/// Starts the program inside `cgroup`, its stderr appended to `log` (the
/// JVM holds the file open: its writer).
pub fn spawn_java(cgroup: &MemoryCgroup, classes: &Path, log: &Path, go: &Path) -> Child {
    let procs = cgroup.path().join("cgroup.procs");
    // `set -e`: if joining the cgroup fails, never exec the program.
    Command::new("sh")
        .arg("-c")
        .arg(r#"set -e; echo $$ > "$1"; exec java -Xmx32m -XX:MaxDirectMemorySize=4g -XX:-UsePerfData -cp "$2" HeapThenNative "$3" 2>>"$4""#)
        .arg("sh")
        .arg(&procs)
        .arg(classes)
        .arg(go)
        .arg(log)
        .stdout(Stdio::null())
        .spawn()
        .expect("spawn java")
}

/// The program compiled, running in `cgroup`, writing to `<dir>/logs/java.log`.
pub struct JavaIncident {
    pub child: Child,
    pub pid: i32,
    pub log: PathBuf,
    go: PathBuf,
}

impl JavaIncident {
    /// Compiles the program under `dir` and starts it in `cgroup` (limited to
    /// [`JAVA_LIMIT_BYTES`]); its log is `<dir>/logs/java.log`.
    pub fn start(dir: &Path, cgroup: &MemoryCgroup) -> JavaIncident {
        let classes = compile(dir);
        std::fs::create_dir_all(dir.join("logs")).expect("logs dir");
        let log = dir.join("logs/java.log");
        let go = dir.join("go");
        let child = spawn_java(cgroup, &classes, &log, &go);
        let pid = i32::try_from(child.id()).expect("pid");
        JavaIncident {
            child,
            pid,
            log,
            go,
        }
    }

    /// Lets it go on from its `OutOfMemoryError` to its kill.
    pub fn release(&self) {
        std::fs::write(&self.go, b"go").expect("write the go file");
    }

    /// Waits for it to end; panics unless the kernel killed it.
    pub fn wait_killed(&mut self) {
        let status = self.child.wait().expect("wait for java");
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&status),
            Some(libc::SIGKILL),
            "java was not OOM-killed: {status}; its log:\n{}",
            self.log_text()
        );
    }

    /// Waits until the agent (its events API on `events`) has sampled the
    /// JVM's cgroup with the JVM in it: a sample with usage above zero. The
    /// lead-up of the kill can only hold such a sample if one was taken
    /// before the test releases the JVM; on a fast host the JVM reaches its
    /// `OutOfMemoryError` within one scrape interval of starting.
    pub async fn wait_sampled(&self, events: u16, cgroup_path: &str) {
        let endpoint: oomscope::api::EventsEndpoint =
            format!("127.0.0.1:{events}").parse().expect("endpoint");
        let mut client = oomscope::api::connect(&endpoint)
            .await
            .expect("connect to the events API");
        let deadline = std::time::Instant::now() + SAMPLE_TIMEOUT;
        loop {
            let snapshot = client
                .snapshot(oomscope::api::v1::SnapshotRequest {
                    include_history: false,
                    include_cgroup_samples: true,
                })
                .await
                .expect("Snapshot")
                .into_inner();
            let sampled = snapshot
                .cgroups
                .iter()
                .find(|c| c.path == cgroup_path)
                .is_some_and(|c| c.samples.iter().any(|s| s.usage_bytes > 0));
            if sampled {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the agent did not sample {cgroup_path} with the JVM in it within \
                 {SAMPLE_TIMEOUT:?}; its cgroups: {:?}",
                snapshot.cgroups
            );
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for JavaIncident {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Where the incident tests' agent listens and what it samples.
pub struct AgentPorts {
    pub events: u16,
    pub health: u16,
    /// The `status` extension's port, when it runs.
    pub status: Option<u16>,
}

/// The agent of the incident tests: `oom` (events API on `ports.events`),
/// `filelog` on `<dir>/logs/*.log` and `memory` sampling every second the
/// cgroups matching `cgroups` (YAML glob strings, already quoted as needed),
/// with its processes when `processes`; records into `out`.
pub fn agent_config(
    dir: &Path,
    out: &Path,
    ports: &AgentPorts,
    cgroups: &[String],
    processes: bool,
) -> String {
    let (status_extension, status_name) = match ports.status {
        Some(port) => (
            format!("  status: {{ endpoint: \"127.0.0.1:{port}\" }}\n"),
            ", status",
        ),
        None => (String::new(), ""),
    };
    let include = cgroups
        .iter()
        .map(|c| format!("{c:?}"))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        r#"
receivers:
  oom:
    events: {{ endpoint: "127.0.0.1:{events}" }}
  filelog:
    include: ["{logs}/*.log"]
    start_at: beginning
    poll_interval: 100ms
  memory:
    collection_interval: 1s
    initial_delay: 0s
    processes: {{ enabled: {processes} }}
    cgroups: {{ include: [{include}] }}
processors:
  batch: {{ timeout: 200ms }}
exporters:
  file: {{ path: "{out}" }}
extensions:
  health_check: {{ endpoint: "127.0.0.1:{health}" }}
{status_extension}service:
  extensions: [health_check{status_name}]
  telemetry: {{ metrics: {{ address: "" }} }}
  oom_score_adj: null
  pipelines:
    logs: {{ receivers: [oom, filelog], processors: [batch], exporters: [file] }}
    metrics: {{ receivers: [memory], processors: [batch], exporters: [file] }}
"#,
        events = ports.events,
        health = ports.health,
        logs = dir.join("logs").display(),
        out = out.display(),
    )
}

/// What every Java incident test needs, taken in this order (each missing
/// facility is a skip with its reason): root, java and the test's own
/// tools (`tools_usable`), the machine's OOM slot, a cgroup limited to
/// [`JAVA_LIMIT_BYTES`], a work directory. Dropped in reverse: the
/// directory, the cgroup, then the slot.
pub struct IncidentSetup {
    pub dir: tempfile::TempDir,
    pub cgroup: MemoryCgroup,
    _slot: OomSlot,
}

pub async fn incident_setup(
    test: &str,
    tools_usable: impl FnOnce(&str) -> bool,
) -> Option<IncidentSetup> {
    if !is_root() {
        skip(test, "needs root (eBPF, /dev/kmsg, memory cgroups)");
        return None;
    }
    if !java_usable(test) || !tools_usable(test) {
        return None;
    }
    let slot = oom_test_slot().await;
    let Some(cgroup) = MemoryCgroup::create(JAVA_LIMIT_BYTES).expect("create the test cgroup")
    else {
        skip(test, "no memory cgroup controller to contain an OOM kill");
        return None;
    };
    Some(IncidentSetup {
        dir: tempfile::tempdir().expect("temp dir"),
        cgroup,
        _slot: slot,
    })
}
