//! The disk under `file_storage` fills up (a small tmpfs) while the agent
//! runs, against the real binary and rotel as the backend.
//!
//! "Acknowledged" here: an OTLP request answered OK, or a file line whose
//! checkpoint (the stored offset) moved past it. Every acknowledged record
//! must reach rotel; file lines are re-readable, so every line must arrive.
//! The agent must keep running, say once that writes fail and once that
//! they work again (not once per item), and resume writing when space
//! returns. Needs root (mount); skips otherwise.

mod common;

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use common::faults::{
    has_panic, healthy, lines_with, logs_client, missing_and_duplicates, occurrences, send_once,
    wait_until, Tmpfs,
};
use common::oomscope::Oomscope;
use common::rotel::Rotel;
use common::{free_port, is_root, skip};

const TIMEOUT: Duration = Duration::from_secs(90);
/// The agent rate-limits repeated messages to one per 10 s: the disk stays
/// full longer than that, so that a message per item or per interval shows.
const HOLD_FULL: Duration = Duration::from_secs(12);
const FAILING: &str = "cannot write to storage";
const WORKS_AGAIN: &str = "writing to storage works again";
const RECORDS_PER_REQUEST: usize = 20;
const LINES_PER_PHASE: usize = 50;

struct Ports {
    grpc: u16,
    health: u16,
    metrics: u16,
}

impl Ports {
    fn new() -> Self {
        Ports {
            grpc: free_port(),
            health: free_port(),
            metrics: free_port(),
        }
    }
}

/// OTLP in and file lines (through a `batch` processor) out to rotel, both
/// through one exporter whose sending queue lives on `state`; the filelog
/// checkpoint too.
fn config(ports: &Ports, backend: SocketAddr, logs: &Path, state: &Path) -> String {
    format!(
        r#"
receivers:
  otlp:
    protocols:
      grpc: {{ endpoint: "127.0.0.1:{grpc}" }}
  filelog:
    include: ["{logs}/*.log"]
    start_at: beginning
    include_all: true
    poll_interval: 50ms
    storage: file_storage
processors:
  batch: {{ timeout: 50ms }}
exporters:
  otlp:
    endpoint: "{backend}"
    tls: {{ insecure: true }}
    retry_on_failure: {{ initial_interval: 100ms, max_interval: 1s, max_elapsed_time: 0s }}
    sending_queue: {{ storage: file_storage }}
extensions:
  health_check: {{ endpoint: "127.0.0.1:{health}" }}
  file_storage: {{ directory: "{state}" }}
service:
  extensions: [health_check, file_storage]
  telemetry:
    logs: {{ encoding: json }}
    metrics: {{ address: "127.0.0.1:{metrics}" }}
  oom_score_adj: null
  pipelines:
    logs/otlp: {{ receivers: [otlp], exporters: [otlp] }}
    logs/files: {{ receivers: [filelog], processors: [batch], exporters: [otlp] }}
"#,
        grpc = ports.grpc,
        health = ports.health,
        metrics = ports.metrics,
        logs = logs.display(),
        state = state.display(),
    )
}

fn start_agent(config: &str, ports: &Ports) -> Oomscope {
    let mut agent = Oomscope::start(config, &[]);
    agent.wait_healthy(ports.health, TIMEOUT);
    agent
}

/// Appends lines; returns the file's length after them.
fn append(path: &Path, lines: &[String]) -> u64 {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .expect("open log");
    for l in lines {
        writeln!(f, "{l}").expect("write log");
    }
    f.metadata().expect("metadata").len()
}

/// What one test run sent, and what of it was acknowledged.
struct Workload {
    run: String,
    rt: tokio::runtime::Runtime,
    acked: Vec<String>,
    refused: usize,
    lines: Vec<String>,
    requests: usize,
}

impl Workload {
    fn new() -> Self {
        Workload {
            run: format!("{:08x}", rand::random::<u32>()),
            rt: tokio::runtime::Runtime::new().expect("runtime"),
            acked: Vec::new(),
            refused: 0,
            lines: Vec::new(),
            requests: 0,
        }
    }

    fn lines(&mut self, phase: &str) -> Vec<String> {
        let lines: Vec<String> = (0..LINES_PER_PHASE)
            .map(|i| format!("disk-full {} {phase} line-{i:03}", self.run))
            .collect();
        self.lines.extend(lines.iter().cloned());
        lines
    }

    /// Sends `n` requests at once; returns how many were acknowledged.
    fn send(&mut self, port: u16, phase: &str, n: usize) -> usize {
        let requests: Vec<Vec<String>> = (0..n)
            .map(|r| {
                (0..RECORDS_PER_REQUEST)
                    .map(|i| {
                        format!(
                            "disk-full {} {phase} request-{:03} record-{i:02}",
                            self.run,
                            self.requests + r
                        )
                    })
                    .collect()
            })
            .collect();
        self.requests += n;
        let results = self.rt.block_on(async {
            let sends = requests.iter().map(|bodies| async move {
                // Longer than the receiver's wait for a blocked pipeline.
                let mut client = logs_client(port, Duration::from_secs(30));
                send_once(&mut client, bodies).await
            });
            futures::future::join_all(sends).await
        });
        let mut acked = 0;
        for (bodies, result) in requests.into_iter().zip(results) {
            match result {
                Ok(()) => {
                    acked += 1;
                    self.acked.extend(bodies);
                }
                Err(_) => self.refused += 1,
            }
        }
        acked
    }

    /// Waits until every acknowledged record and every line reached rotel;
    /// prints and returns the duplicates.
    fn wait_delivered(&self, test: &str, rotel: &Rotel, agent: &Oomscope) -> usize {
        let wanted: Vec<String> = self.acked.iter().chain(&self.lines).cloned().collect();
        let deadline = Instant::now() + TIMEOUT;
        loop {
            let bodies = rotel.received().log_bodies();
            let counts = occurrences(&wanted, &bodies);
            let (missing, duplicates) = missing_and_duplicates(&counts);
            if missing.is_empty() {
                let _ = writeln!(
                    std::io::stderr(),
                    "{test}: {} acknowledged records and {} lines arrived; {} requests refused; \
                     {duplicates} duplicates",
                    self.acked.len(),
                    self.lines.len(),
                    self.refused
                );
                return duplicates;
            }
            assert!(
                Instant::now() < deadline,
                "{} of {} acknowledged records and lines never arrived, first {:?}\nagent:\n{}",
                missing.len(),
                wanted.len(),
                missing.first(),
                agent.output()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

fn setup(test: &str) -> Option<Tmpfs> {
    if !is_root() {
        skip(test, "not root (mounting a tmpfs needs root)");
        return None;
    }
    match Tmpfs::mount(8 * 1024) {
        Ok(t) => Some(t),
        Err(e) => {
            skip(test, format!("cannot mount a tmpfs: {e}"));
            None
        }
    }
}

/// The disk fills while the backend is down: what was acknowledged before
/// stays queued, new OTLP requests are refused (the sender retries), file
/// lines wait (the batch processor is not made to drop them), and when space
/// returns everything flows without a restart. One warning, one recovery.
#[test]
fn a_full_disk_pushes_back_and_writing_resumes_when_space_returns() {
    const TEST: &str = "a_full_disk_pushes_back_and_writing_resumes_when_space_returns";
    let Some(tmpfs) = setup(TEST) else { return };
    let started = Instant::now();
    let dir = tempfile::tempdir().expect("tempdir");
    let logs = dir.path().join("logs");
    std::fs::create_dir(&logs).expect("logs dir");
    let app = logs.join("app.log");
    let state = tmpfs.path().join("state");
    let mut rotel = Rotel::start();
    let ports = Ports::new();
    let config = config(&ports, rotel.grpc_addr(), &logs, &state);
    let agent = start_agent(&config, &ports);
    let mut work = Workload::new();

    // Healthy: everything flows.
    assert_eq!(work.send(ports.grpc, "healthy", 3), 3, "{}", agent.output());
    let lines = work.lines("healthy");
    append(&app, &lines);
    work.wait_delivered(TEST, &rotel, &agent);

    // Backend down: acknowledged data waits on disk.
    rotel.stop();
    assert_eq!(work.send(ports.grpc, "queued", 3), 3, "{}", agent.output());
    let lines = work.lines("queued");
    let len = append(&app, &lines);
    wait_until(
        TIMEOUT,
        || {
            format!(
                "filelog checkpoint did not reach {len}:\n{}",
                agent.output()
            )
        },
        || common::filelog_offset(&state, "receiver_filelog_") == Some(len),
    );

    // The disk fills up.
    tmpfs.fill("filler");
    assert_eq!(tmpfs.free_bytes(), 0, "the tmpfs should be full");
    let full_since = Instant::now();
    let lines = work.lines("full");
    append(&app, &lines);
    let mut rounds = 0;
    while rounds < 2 || full_since.elapsed() < HOLD_FULL {
        assert_eq!(
            work.send(ports.grpc, "full", 2),
            0,
            "nothing can be stored on a full disk, so nothing may be acknowledged"
        );
        rounds += 1;
    }
    assert_eq!(
        common::filelog_offset(&state, "receiver_filelog_"),
        Some(len),
        "the checkpoint moved past lines that could not be stored"
    );
    assert!(healthy(ports.health), "{}", agent.output());
    let output = agent.output();
    let failing = lines_with(&output, FAILING);
    assert_eq!(
        failing.len(),
        1,
        "one warning while writes fail, not one per item:\n{output}"
    );
    assert_eq!(failing[0].level, "WARN");
    assert!(
        failing[0]
            .field("error")
            .is_some_and(|e| e.contains("No space left")),
        "{:?}",
        failing[0]
    );
    let no_space = output
        .lines()
        .filter(|l| l.contains("No space left"))
        .count();
    assert_eq!(no_space, 1, "ENOSPC reported more than once:\n{output}");

    // Space returns, and so does the backend.
    tmpfs.resize(64 * 1024);
    rotel.restart();
    assert_eq!(work.send(ports.grpc, "after", 3), 3, "{}", agent.output());
    let lines = work.lines("after");
    append(&app, &lines);
    work.wait_delivered(TEST, &rotel, &agent);
    wait_until(
        TIMEOUT,
        || format!("no recovery message:\n{}", agent.output()),
        || lines_with(&agent.output(), WORKS_AGAIN).len() == 1,
    );
    let output = agent.output();
    let recovered = lines_with(&output, WORKS_AGAIN);
    let failed_writes: u64 = recovered[0]
        .field("failed_writes")
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(
        failed_writes > 1,
        "the writes that failed are counted: {recovered:?}"
    );
    assert_eq!(lines_with(&output, FAILING).len(), 1, "{output}");
    assert!(!has_panic(&output), "{output}");
    let _ = writeln!(
        std::io::stderr(),
        "{TEST}: {failed_writes} failed writes reported once; took {:?}",
        started.elapsed()
    );
    drop(agent);
}

/// The agent is killed while the disk is full and starts again on the full
/// disk: it comes up healthy (no crash loop), keeps what was acknowledged
/// before, and delivers everything once space returns.
#[test]
fn the_agent_restarts_on_a_full_disk_and_loses_nothing_acknowledged() {
    const TEST: &str = "the_agent_restarts_on_a_full_disk_and_loses_nothing_acknowledged";
    let Some(tmpfs) = setup(TEST) else { return };
    let started = Instant::now();
    let dir = tempfile::tempdir().expect("tempdir");
    let logs = dir.path().join("logs");
    std::fs::create_dir(&logs).expect("logs dir");
    let app = logs.join("app.log");
    let state = tmpfs.path().join("state");
    let mut rotel = Rotel::start();
    let ports = Ports::new();
    let config = config(&ports, rotel.grpc_addr(), &logs, &state);
    let mut agent = start_agent(&config, &ports);
    let mut work = Workload::new();

    rotel.stop();
    assert_eq!(work.send(ports.grpc, "queued", 3), 3, "{}", agent.output());
    let lines = work.lines("queued");
    let len = append(&app, &lines);
    wait_until(
        TIMEOUT,
        || {
            format!(
                "filelog checkpoint did not reach {len}:\n{}",
                agent.output()
            )
        },
        || common::filelog_offset(&state, "receiver_filelog_") == Some(len),
    );

    tmpfs.fill("filler");
    let lines = work.lines("full");
    append(&app, &lines);
    assert_eq!(work.send(ports.grpc, "full", 2), 0);
    wait_until(
        TIMEOUT,
        || format!("no warning about the full disk:\n{}", agent.output()),
        || lines_with(&agent.output(), FAILING).len() == 1,
    );
    agent.kill();

    // Restart on the full disk: up and healthy, and says why it cannot write.
    let agent = start_agent(&config, &ports);
    wait_until(
        TIMEOUT,
        || format!("no warning after the restart:\n{}", agent.output()),
        || lines_with(&agent.output(), FAILING).len() == 1,
    );
    assert!(healthy(ports.health), "{}", agent.output());

    tmpfs.resize(64 * 1024);
    rotel.restart();
    work.wait_delivered(TEST, &rotel, &agent);
    wait_until(
        TIMEOUT,
        || format!("no recovery message:\n{}", agent.output()),
        || lines_with(&agent.output(), WORKS_AGAIN).len() == 1,
    );
    let output = agent.output();
    assert_eq!(lines_with(&output, FAILING).len(), 1, "{output}");
    assert!(!has_panic(&output), "{output}");
    let _ = writeln!(std::io::stderr(), "{TEST}: took {:?}", started.elapsed());
}
