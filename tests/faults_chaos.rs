//! SIGKILL chaos: the agent is killed at random moments, 20 times, during a
//! mixed workload (contained OOM kills, file lines, OTLP in) while the
//! backend (rotel) goes down and up at random points. A seeded RNG drives
//! the schedule; the seed is printed (set `OOMSCOPE_CHAOS_SEED` to replay).
//!
//! What is acknowledged, per source, and what the agent promises for it:
//! - OTLP in (a pipeline straight into a persistent queue): a request
//!   answered OK is on disk; every record of it must reach rotel.
//! - File lines (filelog, checkpoint in `file_storage`): a line whose
//!   stored offset moved past it is acknowledged; the file is re-read from
//!   the checkpoint, so every line, acknowledged or not, must arrive.
//! - OOM kills: the `kmsg` receiver's checkpoint (the last acknowledged
//!   kernel record, never inside an OOM report being assembled) makes every
//!   kill the kernel reported while its ring buffer still holds it arrive
//!   as one grouped OOM report record, including kills that happen while the
//!   agent is down. (The eBPF `oom` receiver has no checkpoint: after a
//!   SIGKILL it can promise nothing about kills it had not yet exported.)
//!
//! Duplicates are allowed (at-least-once) and are counted and printed.

mod common;

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use common::faults::{has_panic, logs_client, missing_and_duplicates, occurrences, send_once};
use common::oom::{MemoryCgroup, OOM_LIMIT_BYTES};
use common::oomscope::Oomscope;
use common::rotel::{Received, Rotel};
use common::{free_port, is_root, skip};

const TEST: &str = "sigkill_at_random_moments_loses_nothing_acknowledged";
const CYCLES: usize = 20;
const TIMEOUT: Duration = Duration::from_secs(120);
const RECORDS_PER_REQUEST: usize = 5;

fn config(grpc: u16, health: u16, logs: &Path, state: &Path, backend: &str, kmsg: bool) -> String {
    let (kmsg_receiver, kmsg_id) = if kmsg {
        (
            "  kmsg:\n    storage: file_storage\n    batch_wait: 50ms\n",
            ", kmsg",
        )
    } else {
        ("", "")
    };
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
{kmsg_receiver}
processors:
  batch: {{ timeout: 50ms }}
exporters:
  otlp:
    endpoint: "{backend}"
    tls: {{ insecure: true }}
    timeout: 2s
    retry_on_failure: {{ initial_interval: 100ms, max_interval: 500ms, max_elapsed_time: 0s }}
    sending_queue: {{ storage: file_storage }}
extensions:
  health_check: {{ endpoint: "127.0.0.1:{health}" }}
  file_storage: {{ directory: "{state}" }}
service:
  extensions: [health_check, file_storage]
  telemetry: {{ metrics: {{ address: "" }} }}
  oom_score_adj: null
  pipelines:
    # OTLP straight into the persistent queue: OK means on disk.
    logs/otlp: {{ receivers: [otlp], exporters: [otlp] }}
    logs/local: {{ receivers: [filelog{kmsg_id}], processors: [batch], exporters: [otlp] }}
"#,
        logs = logs.display(),
        state = state.display(),
    )
}

/// Appends numbered lines until stopped.
fn file_writer(path: PathBuf, run: String, stop: Arc<AtomicBool>) -> thread::JoinHandle<usize> {
    thread::spawn(move || {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .expect("open log");
        let mut n = 0;
        while !stop.load(Ordering::Relaxed) {
            for _ in 0..5 {
                writeln!(f, "chaos {run} line-{n:06}").expect("write log");
                n += 1;
            }
            thread::sleep(Duration::from_millis(50));
        }
        n
    })
}

fn line(run: &str, n: usize) -> String {
    format!("chaos {run} line-{n:06}")
}

/// OTLP requests of fresh records until stopped; returns (acknowledged,
/// not acknowledged) record bodies.
fn otlp_sender(
    port: u16,
    run: String,
    stop: Arc<AtomicBool>,
) -> thread::JoinHandle<(Vec<String>, Vec<String>)> {
    thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async move {
            let mut client = logs_client(port, Duration::from_secs(5));
            let (mut acked, mut unacked) = (Vec::new(), Vec::new());
            let mut request = 0;
            while !stop.load(Ordering::Relaxed) {
                let bodies: Vec<String> = (0..RECORDS_PER_REQUEST)
                    .map(|i| format!("chaos {run} otlp-{request:05}-{i}"))
                    .collect();
                request += 1;
                match send_once(&mut client, &bodies).await {
                    Ok(()) => acked.extend(bodies),
                    Err(_) => unacked.extend(bodies),
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            (acked, unacked)
        })
    })
}

/// Contained OOM kills, one at a time, when asked; returns the victims'
/// pids.
struct Killer {
    requests: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    handle: thread::JoinHandle<Vec<i32>>,
}

impl Killer {
    fn start() -> Killer {
        let requests = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (req, st) = (Arc::clone(&requests), Arc::clone(&stop));
        let handle = thread::spawn(move || {
            let mut victims = Vec::new();
            let mut done = 0;
            loop {
                if done < req.load(Ordering::Relaxed) {
                    let cgroup = MemoryCgroup::create(OOM_LIMIT_BYTES)
                        .expect("memory cgroup")
                        .expect("a memory controller");
                    let mut child = cgroup.spawn_allocator().expect("spawn allocator");
                    let status = child.wait().expect("wait allocator");
                    use std::os::unix::process::ExitStatusExt as _;
                    assert_eq!(
                        status.signal(),
                        Some(libc::SIGKILL),
                        "the allocator was not OOM-killed: {status:?}"
                    );
                    victims.push(child.pid());
                    done += 1;
                } else if st.load(Ordering::Relaxed) {
                    return victims;
                } else {
                    thread::sleep(Duration::from_millis(20));
                }
            }
        });
        Killer {
            requests,
            stop,
            handle,
        }
    }

    fn kill_soon(&self) {
        self.requests.fetch_add(1, Ordering::Relaxed);
    }

    fn finish(self) -> Vec<i32> {
        self.stop.store(true, Ordering::Relaxed);
        self.handle.join().expect("killer thread")
    }
}

/// The pids of the grouped kernel OOM reports rotel received, with counts.
fn oom_reports(received: &Received) -> BTreeMap<i32, usize> {
    let mut out = BTreeMap::new();
    for log in &received.logs {
        if log.attributes.get("oom.pattern") != Some("kernel.oom_report") {
            continue;
        }
        if let Some(pid) = log
            .attributes
            .get("process.pid")
            .and_then(|p| p.parse().ok())
        {
            *out.entry(pid).or_insert(0) += 1;
        }
    }
    out
}

fn print(msg: &str) {
    let _ = writeln!(std::io::stderr(), "{TEST}: {msg}");
}

#[test]
fn sigkill_at_random_moments_loses_nothing_acknowledged() {
    let seed = std::env::var("OOMSCOPE_CHAOS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random::<u64>);
    print(&format!(
        "seed {seed} (OOMSCOPE_CHAOS_SEED={seed} replays the schedule)"
    ));
    let mut rng = StdRng::seed_from_u64(seed);
    // OOM kills need root, a memory controller and a readable /dev/kmsg;
    // the rest of the workload runs anyway.
    let kills = if !is_root() {
        skip(TEST, "OOM kills left out: not root");
        false
    } else if std::fs::File::open("/dev/kmsg").is_err() {
        skip(TEST, "OOM kills left out: /dev/kmsg is not readable");
        false
    } else if MemoryCgroup::create(OOM_LIMIT_BYTES)
        .ok()
        .flatten()
        .is_none()
    {
        skip(TEST, "OOM kills left out: no memory cgroup controller");
        false
    } else {
        true
    };
    // The kills take the machine's OOM slot (and hold the kernel log shared)
    // for the whole run: the kmsg checkpoint is what promises them.
    let _slot = kills.then(common::oom::oom_test_slot_blocking);
    let started = Instant::now();
    let dir = tempfile::tempdir().expect("tempdir");
    let logs = dir.path().join("logs");
    let state = dir.path().join("state");
    std::fs::create_dir(&logs).expect("logs dir");
    let app = logs.join("app.log");
    let run = format!("{seed:016x}");
    let mut rotel = Rotel::start();
    let mut rotel_up = true;
    let (grpc, health) = (free_port(), free_port());
    let config = config(
        grpc,
        health,
        &logs,
        &state,
        &rotel.grpc_addr().to_string(),
        kills,
    );

    let stop = Arc::new(AtomicBool::new(false));
    let mut agent = Oomscope::start(&config, &[]);
    agent.wait_healthy(health, TIMEOUT);
    let writer = file_writer(app.clone(), run.clone(), Arc::clone(&stop));
    let sender = otlp_sender(grpc, run.clone(), Arc::clone(&stop));
    let killer = kills.then(Killer::start);
    let mut outputs = Vec::new();
    let mut acked_offset = 0;
    let mut toggles = 0;
    let mut kill_requests = 0;

    for cycle in 0..CYCLES {
        if cycle > 0 {
            agent = Oomscope::start(&config, &[]);
            agent.wait_healthy(health, TIMEOUT);
        }
        if let Some(k) = &killer {
            if rng.random_bool(0.5) {
                k.kill_soon();
                kill_requests += 1;
            }
        }
        let up_for = Duration::from_millis(rng.random_range(200..2500));
        let toggle_at = rng
            .random_bool(0.6)
            .then(|| up_for.mul_f64(rng.random_range(0.0..1.0)));
        let cycle_start = Instant::now();
        if let Some(at) = toggle_at {
            thread::sleep(at);
            if rotel_up {
                rotel.stop();
            } else {
                rotel.restart();
            }
            rotel_up = !rotel_up;
            toggles += 1;
        }
        thread::sleep(up_for.saturating_sub(cycle_start.elapsed()));
        agent.kill();
        // Offsets stored before the kill are acknowledged lines.
        acked_offset =
            acked_offset.max(common::filelog_offset(&state, "receiver_filelog_").unwrap_or(0));
        outputs.push(agent.output());
        thread::sleep(Duration::from_millis(rng.random_range(0..800)));
    }

    // The end: the agent and the backend up, the workload stopped.
    agent = Oomscope::start(&config, &[]);
    agent.wait_healthy(health, TIMEOUT);
    if !rotel_up {
        rotel.restart();
    }
    stop.store(true, Ordering::Relaxed);
    let lines_written = writer.join().expect("writer");
    let (acked, unacked) = sender.join().expect("sender");
    let victims = killer.map(Killer::finish).unwrap_or_default();
    let lines: Vec<String> = (0..lines_written).map(|n| line(&run, n)).collect();
    let file_text = std::fs::read_to_string(&app).expect("read log");
    let acked_lines = file_text[..usize::try_from(acked_offset)
        .unwrap_or(usize::MAX)
        .min(file_text.len())]
        .lines()
        .count();
    print(&format!(
        "{CYCLES} SIGKILLs, backend toggled {toggles} times, {kill_requests} OOM kills asked, {} done; \
         {lines_written} lines written ({acked_lines} acknowledged before a kill), {} OTLP records \
         acknowledged, {} not",
        victims.len(),
        acked.len(),
        unacked.len()
    ));

    let deadline = Instant::now() + TIMEOUT;
    let (received, line_counts, otlp_counts, reports) = loop {
        let received = rotel.received();
        let bodies = received.log_bodies();
        let line_counts = occurrences(&lines, &bodies);
        let otlp_counts = occurrences(&acked, &bodies);
        let reports = oom_reports(&received);
        let lines_missing = missing_and_duplicates(&line_counts).0.len();
        let otlp_missing = missing_and_duplicates(&otlp_counts).0.len();
        let kills_missing: Vec<i32> = victims
            .iter()
            .copied()
            .filter(|pid| !reports.contains_key(pid))
            .collect();
        if lines_missing == 0 && otlp_missing == 0 && kills_missing.is_empty() {
            break (received, line_counts, otlp_counts, reports);
        }
        if Instant::now() >= deadline {
            let all_outputs = outputs.join("\n---\n");
            panic!(
                "seed {seed}: {lines_missing} of {} lines, {otlp_missing} of {} acknowledged OTLP \
                 records and the OOM kills of pids {kills_missing:?} never arrived\n\
                 first missing line: {:?}\nfirst missing record: {:?}\nlast agent:\n{}\n\
                 earlier agents:\n{all_outputs}",
                lines.len(),
                acked.len(),
                missing_and_duplicates(&line_counts).0.first(),
                missing_and_duplicates(&otlp_counts).0.first(),
                agent.output(),
            );
        }
        thread::sleep(Duration::from_millis(500));
    };
    let unacked_arrived = occurrences(&unacked, &received.log_bodies())
        .values()
        .filter(|&&n| n > 0)
        .count();
    let line_dups = missing_and_duplicates(&line_counts).1;
    let otlp_dups = missing_and_duplicates(&otlp_counts).1;
    let kill_dups: usize = victims
        .iter()
        .map(|pid| reports.get(pid).copied().unwrap_or(0).saturating_sub(1))
        .sum();
    print(&format!(
        "all arrived: {} lines ({line_dups} duplicates), {} acknowledged OTLP records \
         ({otlp_dups} duplicates; {unacked_arrived} of {} unacknowledged ones arrived too), \
         {} OOM kills ({kill_dups} duplicates); took {:?}",
        lines.len(),
        acked.len(),
        unacked.len(),
        victims.len(),
        started.elapsed()
    ));
    outputs.push(agent.output());
    for (i, out) in outputs.iter().enumerate() {
        assert!(
            !has_panic(out),
            "seed {seed}: agent run {i} panicked:\n{out}"
        );
    }
    let (status, clean) = agent.stop(TIMEOUT);
    assert!(clean && status.success(), "{}", agent.output());
}
