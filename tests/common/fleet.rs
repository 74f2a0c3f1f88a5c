//! A fleet of simulated nodes on one machine: each node is one oomscope
//! agent with its own `host.name`, state directory, ports, log directory and
//! memory cgroup subtree (`/oomscope-fleet/node-NN`), sending over OTLP/gRPC
//! with a persistent sending queue to one gateway (rotel), which forwards to
//! a backend (oomscope: OTLP receiver -> file exporter).

use std::{
    collections::BTreeMap,
    fs, io,
    net::SocketAddr,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use super::oom::{find_memory_hierarchy, MemoryCgroup, OomChild, OOM_LIMIT_BYTES};
use super::oomscope::{own_metric, Oomscope};
use super::otlp::json_attr;
use super::{free_port, machine_lock, LockMode, MachineLock};

/// The top of the fleet's cgroup subtrees, inside the memory hierarchy.
pub const FLEET_CGROUP: &str = "oomscope-fleet";

/// Limit of each node's steady cgroup: a cgroup with a limit and no
/// processes, so that each node's `memory` receiver has one of its own to
/// report (a cgroup is reported when it has a limit or processes).
const STEADY_LIMIT_BYTES: u64 = 64 * 1024 * 1024;

/// The name of node `index` (1-based): `node-01`.
pub fn node_name(index: usize) -> String {
    format!("node-{index:02}")
}

/// The cgroup subtree of a node as the kernel names it: `/oomscope-fleet/node-01`.
pub fn node_cgroup(index: usize) -> String {
    format!("/{FLEET_CGROUP}/{}", node_name(index))
}

/// The fleet's cgroups: `/oomscope-fleet`, and for each node
/// `/oomscope-fleet/node-NN` (no limit) and `.../node-NN/steady` (a limit,
/// no processes). Held with a machine-wide lock, since the path is fixed;
/// removed on drop, children first.
#[derive(Debug)]
pub struct FleetCgroups {
    // Field order is drop order: nodes (children first), then the root.
    nodes: Vec<(MemoryCgroup, MemoryCgroup)>,
    root: MemoryCgroup,
    _lock: MachineLock,
}

impl FleetCgroups {
    /// Creates the subtrees of `nodes` nodes. `Ok(None)` when the host has no
    /// memory controller. Leftovers of an earlier run that crashed are
    /// removed first.
    pub fn create(nodes: usize) -> io::Result<Option<Self>> {
        let lock = machine_lock("fleet-cgroups", LockMode::Exclusive);
        let Some((hierarchy, _)) = find_memory_hierarchy() else {
            return Ok(None);
        };
        remove_tree(&hierarchy.join(FLEET_CGROUP))?;
        let Some(root) = MemoryCgroup::create_at(FLEET_CGROUP, None)? else {
            return Ok(None);
        };
        let mut fleet = Self {
            nodes: Vec::with_capacity(nodes),
            root,
            _lock: lock,
        };
        for i in 1..=nodes {
            let node = MemoryCgroup::create_at(&node_cgroup(i), None)?
                .ok_or_else(|| io::Error::other("the memory controller went away"))?;
            let steady = MemoryCgroup::create_at(
                &format!("{}/steady", node_cgroup(i)),
                Some(STEADY_LIMIT_BYTES),
            )?
            .ok_or_else(|| io::Error::other("the memory controller went away"))?;
            fleet.nodes.push((steady, node));
        }
        Ok(Some(fleet))
    }

    /// The steady cgroup of node `index` (1-based), as the kernel names it.
    pub fn steady_cgroup(&self, index: usize) -> String {
        self.nodes[index - 1].0.cgroup_path()
    }

    /// The fleet's root cgroup.
    pub fn root(&self) -> &MemoryCgroup {
        &self.root
    }

    /// A contained OOM kill on node `index`: a new cgroup
    /// `/oomscope-fleet/node-NN/<name>` limited to [`OOM_LIMIT_BYTES`] and an
    /// allocator in it; returns once the kernel killed it, with the victim's
    /// pid and cgroup. The caller holds the OOM test slot.
    pub fn oom_kill(&self, index: usize, name: &str) -> Kill {
        let cgroup_path = format!("{}/{name}", node_cgroup(index));
        let cgroup = MemoryCgroup::create_at(&cgroup_path, Some(OOM_LIMIT_BYTES))
            .unwrap_or_else(|e| panic!("create {cgroup_path}: {e}"))
            .expect("the memory controller is there");
        let mut child: OomChild = cgroup.spawn_allocator().expect("spawn the allocator");
        let pid = child.pid();
        let status = child.wait().expect("wait for the allocator");
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&status),
            Some(libc::SIGKILL),
            "the allocator in {cgroup_path} was not OOM-killed: {status}"
        );
        drop(child);
        // Dropping the cgroup removes it (once the victim has fully exited).
        Kill {
            node: index,
            pid,
            cgroup: cgroup.cgroup_path(),
        }
    }
}

/// Removes a cgroup directory tree left by a crashed run, deepest first; a
/// process still in it (only an allocator of that run can be) is killed.
fn remove_tree(dir: &Path) -> io::Result<()> {
    if !dir.is_dir() {
        return Ok(());
    }
    for entry in fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            remove_tree(&path)?;
        }
    }
    if let Ok(procs) = fs::read_to_string(dir.join("cgroup.procs")) {
        for pid in procs.lines().filter_map(|l| l.trim().parse::<u32>().ok()) {
            super::signal(pid, libc::SIGKILL);
        }
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) if Instant::now() >= deadline => {
                return Err(io::Error::other(format!(
                    "remove the stale cgroup {}: {e}",
                    dir.display()
                )))
            }
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}

/// An OOM kill caused on a node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kill {
    /// The node (1-based).
    pub node: usize,
    /// The victim's pid.
    pub pid: i32,
    /// The victim's cgroup, as the kernel names it.
    pub cgroup: String,
}

/// The backend: oomscope with an OTLP/gRPC receiver writing every request to
/// an OTLP-JSON-lines file.
#[derive(Debug)]
pub struct Backend {
    agent: Oomscope,
    grpc: SocketAddr,
    out: PathBuf,
    _dir: tempfile::TempDir,
}

impl Backend {
    pub fn start(timeout: Duration) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let out = dir.path().join("backend.jsonl");
        let grpc = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let config =
            super::otlp::otlp_to_file_config(&[format!(r#"grpc: {{ endpoint: "{grpc}" }}"#)], &out);
        let mut agent = Oomscope::start(&config, &[]);
        agent.wait_ready(grpc, timeout);
        Self {
            agent,
            grpc,
            out,
            _dir: dir,
        }
    }

    /// Its OTLP/gRPC address.
    pub fn grpc_addr(&self) -> SocketAddr {
        self.grpc
    }

    /// What it wrote so far.
    pub fn received(&self) -> Arrived {
        Arrived::read(&self.out)
    }

    /// Stops it (SIGTERM: it flushes its file) and returns what it wrote.
    pub fn stop(&mut self, timeout: Duration) -> Arrived {
        let (status, clean) = self.agent.stop(timeout);
        assert!(
            clean && status.success(),
            "the backend did not stop cleanly ({status}):\n{}",
            self.agent.output()
        );
        self.received()
    }
}

/// One log record as the backend wrote it, with its resource's `host.name`.
#[derive(Debug, Clone)]
pub struct ArrivedLog {
    pub host: Option<String>,
    pub record: serde_json::Value,
    pub resource: serde_json::Value,
}

/// One metric data point as the backend wrote it, with its resource's
/// `host.name`.
#[derive(Debug, Clone)]
pub struct ArrivedPoint {
    pub host: Option<String>,
    pub metric: String,
    pub point: serde_json::Value,
}

/// Everything the backend wrote, records kept with their resources.
#[derive(Debug, Default)]
pub struct Arrived {
    pub logs: Vec<ArrivedLog>,
    pub points: Vec<ArrivedPoint>,
}

fn host_name(resource: &serde_json::Value) -> Option<String> {
    json_attr(&resource["attributes"], "host.name")
        .and_then(|v| v["stringValue"].as_str())
        .map(str::to_owned)
}

impl Arrived {
    fn read(path: &Path) -> Self {
        let mut out = Self::default();
        let Ok(text) = fs::read_to_string(path) else {
            return out;
        };
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            // A line being written may be incomplete: stop there.
            let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
                break;
            };
            for rl in v["resourceLogs"].as_array().into_iter().flatten() {
                let host = host_name(&rl["resource"]);
                for sl in rl["scopeLogs"].as_array().into_iter().flatten() {
                    for lr in sl["logRecords"].as_array().into_iter().flatten() {
                        out.logs.push(ArrivedLog {
                            host: host.clone(),
                            record: lr.clone(),
                            resource: rl["resource"].clone(),
                        });
                    }
                }
            }
            for rm in v["resourceMetrics"].as_array().into_iter().flatten() {
                let host = host_name(&rm["resource"]);
                for sm in rm["scopeMetrics"].as_array().into_iter().flatten() {
                    for m in sm["metrics"].as_array().into_iter().flatten() {
                        let metric = m["name"].as_str().unwrap_or_default().to_owned();
                        for kind in ["sum", "gauge", "histogram"] {
                            for p in m[kind]["dataPoints"].as_array().into_iter().flatten() {
                                out.points.push(ArrivedPoint {
                                    host: host.clone(),
                                    metric: metric.clone(),
                                    point: p.clone(),
                                });
                            }
                        }
                    }
                }
            }
        }
        out
    }
}

/// The settings every agent of the fleet shares.
#[derive(Debug, Clone)]
pub struct AgentSettings {
    /// The gateway's OTLP/gRPC address.
    pub gateway: SocketAddr,
    /// How often the `memory` receiver scrapes (small fleets on small
    /// machines: keep it long).
    pub memory_interval: &'static str,
}

/// One simulated node: its agent and everything that is its own.
#[derive(Debug)]
pub struct Node {
    pub index: usize,
    pub name: String,
    /// The directory its `filelog` receiver reads (`*.log`).
    pub logs: PathBuf,
    /// Its `file_storage` directory: file offsets and the sending queue.
    pub state: PathBuf,
    health: u16,
    metrics: u16,
    config: String,
    agent: Option<Oomscope>,
    _dir: tempfile::TempDir,
}

impl Node {
    /// Prepares node `index` (1-based); [`Node::start`] runs its agent.
    pub fn new(index: usize, settings: &AgentSettings) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let logs = dir.path().join("logs");
        let state = dir.path().join("state");
        fs::create_dir_all(&logs).expect("create the node's log directory");
        fs::create_dir_all(&state).expect("create the node's state directory");
        let (health, metrics) = (free_port(), free_port());
        let name = node_name(index);
        let config = agent_config(
            &name,
            &node_cgroup(index),
            &logs,
            &state,
            health,
            metrics,
            settings,
        );
        Self {
            index,
            name,
            logs,
            state,
            health,
            metrics,
            config,
            agent: None,
            _dir: dir,
        }
    }

    /// Starts the agent (without waiting; see [`Node::wait_healthy`]).
    pub fn start(&mut self) {
        assert!(self.agent.is_none(), "{} is already running", self.name);
        self.agent = Some(Oomscope::start(&self.config, &[]));
    }

    /// Waits until every pipeline and receiver of the agent runs.
    pub fn wait_healthy(&mut self, timeout: Duration) {
        let health = self.health;
        self.agent_mut().wait_healthy(health, timeout);
    }

    fn agent_mut(&mut self) -> &mut Oomscope {
        let name = &self.name;
        self.agent
            .as_mut()
            .unwrap_or_else(|| panic!("{name} is not running"))
    }

    /// What the agent printed since it last started.
    pub fn output(&self) -> String {
        self.agent
            .as_ref()
            .map(Oomscope::output)
            .unwrap_or_default()
    }

    /// How many times the agent logged a failed export since it last started.
    pub fn export_failures(&self) -> usize {
        self.output().matches("Exporting failed").count()
    }

    /// Panics (with the agent's output) when the agent has exited.
    pub fn assert_running(&mut self) {
        let name = self.name.clone();
        let agent = self.agent_mut();
        if let Some(status) = agent.try_status() {
            panic!("{name}'s agent exited ({status}):\n{}", agent.output());
        }
    }

    /// Kills the agent with SIGKILL.
    pub fn kill9(&mut self) {
        let status = self.agent_mut().kill();
        assert!(
            !status.success(),
            "SIGKILL should end {}'s agent",
            self.name
        );
        self.agent = None;
    }

    /// Stops the agent with SIGTERM and asserts it exited cleanly.
    pub fn stop(&mut self, timeout: Duration) {
        let name = self.name.clone();
        let agent = self.agent_mut();
        let (status, clean) = agent.stop(timeout);
        assert!(
            clean && status.success(),
            "{name}'s agent did not stop cleanly ({status}):\n{}",
            agent.output()
        );
        self.agent = None;
    }

    /// Requests waiting in the agent's sending queue (its own metric);
    /// `None` while its metrics endpoint does not answer.
    pub fn queue_size(&self) -> Option<f64> {
        own_metric(self.metrics, "otelcol_exporter_queue_size", &[])
    }

    /// The node's log file.
    pub fn log_file(&self) -> PathBuf {
        self.logs.join("app.log")
    }

    /// Appends `lines` to the node's log file.
    pub fn append_lines(&self, lines: &[String]) {
        use std::io::Write as _;
        let mut f = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_file())
            .expect("open the node's log file");
        for l in lines {
            writeln!(f, "{l}").expect("write the node's log file");
        }
    }

    /// The `filelog` receiver's stored offset of the node's log file (it is
    /// stored once what was read is acknowledged: written to the persistent
    /// sending queue).
    pub fn stored_log_offset(&self) -> Option<u64> {
        super::filelog_offset(&self.state, "receiver_filelog_")
    }
}

/// The agent of a simulated node: its kills (the `oom` receiver, filtered to
/// the node's cgroup subtree), its log lines (`filelog` on its own
/// directory), its cgroups' memory (the `memory` receiver, filtered alike,
/// nothing else scraped), all under its own `host.name`, sent over OTLP/gRPC
/// through a persistent queue in its own `file_storage`.
fn agent_config(
    name: &str,
    cgroup: &str,
    logs: &Path,
    state: &Path,
    health: u16,
    metrics: u16,
    settings: &AgentSettings,
) -> String {
    format!(
        r#"
receivers:
  oom:
    events: null
    metrics_interval: 15s
    cgroups: {{ include: ["{cgroup}/**"] }}
  filelog:
    include: ["{logs}/*.log"]
    start_at: beginning
    include_file_path: true
    poll_interval: 250ms
    storage: file_storage
  memory:
    collection_interval: {memory_interval}
    system: {{ enabled: false }}
    pressure: {{ enabled: false }}
    processes: {{ enabled: false }}
    cgroups: {{ include: ["{cgroup}/**"] }}
processors:
  resource:
    attributes:
      - {{ key: host.name, value: "{name}", action: upsert }}
  batch: {{ timeout: 200ms }}
exporters:
  otlp:
    endpoint: "{gateway}"
    tls: {{ insecure: true }}
    timeout: 30s
    retry_on_failure: {{ initial_interval: 200ms, max_interval: 2s, max_elapsed_time: 0s }}
    sending_queue: {{ storage: file_storage, num_consumers: 2 }}
extensions:
  health_check: {{ endpoint: "127.0.0.1:{health}" }}
  file_storage: {{ directory: "{state}" }}
service:
  extensions: [health_check, file_storage]
  telemetry: {{ metrics: {{ address: "127.0.0.1:{metrics}" }} }}
  oom_score_adj: null
  pipelines:
    logs: {{ receivers: [oom, filelog], processors: [resource, batch], exporters: [otlp] }}
    metrics: {{ receivers: [oom, memory], processors: [resource, batch], exporters: [otlp] }}
"#,
        logs = logs.display(),
        state = state.display(),
        gateway = settings.gateway,
        memory_interval = settings.memory_interval,
    )
}

/// What the fleet's nodes produced, to be found at the backend exactly once
/// each: log lines by body, kills by victim pid, each with its node.
#[derive(Debug, Default)]
pub struct Expected {
    pub lines: BTreeMap<String, usize>,
    pub kills: BTreeMap<i32, Kill>,
}

impl Expected {
    /// An OOM log line unique to `node`, `phase` and `seq`: the Rust
    /// allocation failure message, with the request size carrying the ids.
    pub fn line(node: usize, phase: usize, seq: usize) -> String {
        let bytes = node * 1_000_000 + phase * 1_000 + seq;
        format!(
            "{} phase {phase} line {seq}: memory allocation of {bytes} bytes failed",
            node_name(node)
        )
    }
}

/// How often each expected record arrived, and every record that arrived
/// that was not expected or from the wrong node.
#[derive(Debug, Default)]
pub struct Tally {
    pub lines: BTreeMap<String, usize>,
    pub kills: BTreeMap<i32, usize>,
    /// Records that should not be there, described.
    pub wrong: Vec<String>,
}

impl Tally {
    /// Counts the backend's log records against `expected`, checking each
    /// one's node: `host.name`, and for a line its file's directory, for a
    /// kill its victim's cgroup.
    pub fn of(arrived: &Arrived, expected: &Expected, nodes: &[Node]) -> Self {
        let mut tally = Self {
            lines: expected.lines.keys().map(|l| (l.clone(), 0)).collect(),
            kills: expected.kills.keys().map(|&p| (p, 0)).collect(),
            wrong: Vec::new(),
        };
        for log in &arrived.logs {
            let r = &log.record;
            let host = log.host.as_deref().unwrap_or("<none>");
            if r["eventName"] == "linux.oom.kill" {
                let pid =
                    super::otlp::attr_str(r, "process.pid").and_then(|p| p.parse::<i32>().ok());
                let cgroup = super::otlp::attr_str(r, "oom.victim.cgroup");
                let Some(kill) = pid.and_then(|p| expected.kills.get(&p)) else {
                    tally.wrong.push(format!(
                        "a kill nobody caused here (pid {pid:?}, cgroup {cgroup:?}) from {host}"
                    ));
                    continue;
                };
                *tally.kills.entry(kill.pid).or_default() += 1;
                if host != node_name(kill.node) || cgroup.as_deref() != Some(kill.cgroup.as_str()) {
                    tally.wrong.push(format!(
                        "the kill of pid {} in {} (node {}) arrived from {host} with cgroup {cgroup:?}",
                        kill.pid,
                        kill.cgroup,
                        node_name(kill.node)
                    ));
                }
                continue;
            }
            let body = r["body"]["stringValue"].as_str().unwrap_or_default();
            let Some(&node) = expected.lines.get(body) else {
                tally
                    .wrong
                    .push(format!("a record nobody wrote here from {host}: {r}"));
                continue;
            };
            *tally.lines.entry(body.to_owned()).or_default() += 1;
            let path = super::otlp::attr_str(r, "log.file.path").unwrap_or_default();
            let own_dir = nodes
                .iter()
                .find(|n| n.index == node)
                .map(|n| n.logs.display().to_string())
                .unwrap_or_default();
            if host != node_name(node) || !path.starts_with(&own_dir) {
                tally.wrong.push(format!(
                    "line {body:?} of {} arrived from {host} with log.file.path {path:?}",
                    node_name(node)
                ));
            }
        }
        tally
    }

    /// Whether every expected record arrived at least once.
    pub fn complete(&self) -> bool {
        self.lines.values().all(|&n| n >= 1) && self.kills.values().all(|&n| n >= 1)
    }

    /// Expected records that arrived other than once, described.
    pub fn not_once(&self) -> Vec<String> {
        let lines = self
            .lines
            .iter()
            .filter(|(_, &n)| n != 1)
            .map(|(l, n)| format!("line {l:?} arrived {n} times"));
        let kills = self
            .kills
            .iter()
            .filter(|(_, &n)| n != 1)
            .map(|(p, n)| format!("the kill of pid {p} arrived {n} times"));
        lines.chain(kills).collect()
    }
}

/// Every metric point that names a cgroup (`oomscope.cgroup.path`, or the OOM
/// counters' `oom.victim.cgroup` / `oom.memcg`) outside the subtree of the
/// node whose `host.name` it carries, described.
pub fn foreign_cgroup_points(arrived: &Arrived) -> Vec<String> {
    let mut wrong = Vec::new();
    for p in &arrived.points {
        let host = p.host.as_deref().unwrap_or("<none>");
        let own = format!("/{FLEET_CGROUP}/{host}");
        for key in ["oomscope.cgroup.path", "oom.victim.cgroup", "oom.memcg"] {
            let Some(path) =
                json_attr(&p.point["attributes"], key).and_then(|v| v["stringValue"].as_str())
            else {
                continue;
            };
            let inside = path == own || path.starts_with(&format!("{own}/"));
            if !inside {
                wrong.push(format!("{} from {host} has {key} {path:?}", p.metric));
            }
        }
    }
    wrong
}

/// Waits until `done` holds, checking every 200 ms; panics with `what` and
/// the last `state` description after `timeout`.
pub fn wait_until(what: &str, timeout: Duration, mut done: impl FnMut() -> Result<(), String>) {
    let deadline = Instant::now() + timeout;
    loop {
        let last = match done() {
            Ok(()) => return,
            Err(state) => state,
        };
        assert!(
            Instant::now() < deadline,
            "{what}: not within {timeout:?}; last state: {last}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}
