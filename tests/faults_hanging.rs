//! Exporter endpoints that hang, in front of a real rotel: one accepts TCP
//! and never answers, one answers (with rotel's real OTLP response) only
//! after 30 s. While a client keeps sending as fast as it can, the
//! exporter's per-attempt `timeout` must fire (the agent's log says so), its
//! sending queue must stay within its capacity (`otelcol_exporter_queue_size`
//! on the Prometheus endpoint), and the agent's memory must stay bounded
//! (pushing back on the sender instead of buffering). Once the endpoint is
//! fixed, every acknowledged record arrives.

mod common;

use std::io::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::faults::{
    has_panic, lines_with, logs_client, missing_and_duplicates, occurrences, send_once, Proxy,
    ProxyMode,
};
use common::oomscope::{own_metric, Oomscope};
use common::rotel::Rotel;
use common::{free_port, proc_status_bytes};

const TIMEOUT: Duration = Duration::from_secs(90);
/// Records per request and bytes per record body: 64 KiB requests.
const RECORDS: usize = 64;
const BODY: usize = 1024;
/// What the client offers while the endpoint hangs: twice the memory bound,
/// so that an agent holding on to what it is offered would exceed it.
const OFFERED: u64 = 256 << 20;
/// Growth of the agent's peak RSS over its RSS at start. What the config
/// lets it hold: 1 MiB of requests in flight at the receiver, 10 or 20
/// queued requests of 64 KiB, two being exported; decoded, that is a few
/// times the wire size, far below this.
const RSS_GROWTH_BOUND: u64 = 128 << 20;

/// A client sending distinct records as fast as the agent takes them, on
/// `concurrency` concurrent calls; remembers what was acknowledged.
struct Flood {
    stop: Arc<AtomicBool>,
    acked: Arc<Mutex<Vec<String>>>,
    offered: Arc<AtomicU64>,
    refused: Arc<AtomicU64>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    /// Its own runtime, shut down without waiting when a test fails.
    rt: Option<tokio::runtime::Runtime>,
}

impl Flood {
    fn start(port: u16, run: &str, concurrency: usize) -> Flood {
        let rt = tokio::runtime::Runtime::new().expect("runtime");
        let mut flood = Flood {
            stop: Arc::default(),
            acked: Arc::default(),
            offered: Arc::default(),
            refused: Arc::default(),
            tasks: Vec::new(),
            rt: None,
        };
        let mut tasks = Vec::new();
        for task in 0..concurrency {
            let (stop, acked, offered, refused) = (
                Arc::clone(&flood.stop),
                Arc::clone(&flood.acked),
                Arc::clone(&flood.offered),
                Arc::clone(&flood.refused),
            );
            let run = run.to_owned();
            tasks.push(rt.spawn(async move {
                let mut client = logs_client(port, Duration::from_secs(60));
                let mut request = 0;
                while !stop.load(Ordering::Relaxed) {
                    let bodies: Vec<String> = (0..RECORDS)
                        .map(|i| {
                            let id = format!("hang {run} t{task}-r{request}-i{i} ");
                            format!("{id}{}", "x".repeat(BODY.saturating_sub(id.len())))
                        })
                        .collect();
                    request += 1;
                    offered.fetch_add((RECORDS * BODY) as u64, Ordering::Relaxed);
                    match send_once(&mut client, &bodies).await {
                        Ok(()) => acked
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .extend(bodies),
                        Err(_) => {
                            refused.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            }));
        }
        flood.tasks = tasks;
        flood.rt = Some(rt);
        flood
    }

    fn offered(&self) -> u64 {
        self.offered.load(Ordering::Relaxed)
    }

    /// Stops sending; returns what was acknowledged.
    fn stop(mut self) -> (Vec<String>, u64) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(rt) = &self.rt {
            for t in std::mem::take(&mut self.tasks) {
                let _ = rt.block_on(t);
            }
        }
        let acked = std::mem::take(&mut *self.acked.lock().unwrap_or_else(|p| p.into_inner()));
        (acked, self.refused.load(Ordering::Relaxed))
    }
}

impl Drop for Flood {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

/// Failed attempts the agent logged as timed out (its own per-attempt
/// timeout, or the gRPC deadline it sent), counting the ones its rate limit
/// folded into `suppressed`.
fn logged_timeouts(output: &str, message: &str) -> u64 {
    lines_with(output, message)
        .iter()
        .filter(|l| {
            l.field("error")
                .is_some_and(|e| e.contains("timed out") || e.contains("Timeout expired"))
        })
        .map(|l| {
            1 + l
                .field("suppressed")
                .and_then(|s| s.parse().ok())
                .unwrap_or(0)
        })
        .sum()
}

/// The config: OTLP/gRPC in (1 MiB of requests in flight at most), one
/// exporter (`exporter` is its YAML).
fn config(grpc: u16, metrics: u16, exporter: &str, extensions: &str) -> String {
    format!(
        r#"
receivers:
  otlp:
    protocols:
      grpc: {{ endpoint: "127.0.0.1:{grpc}", max_inflight_bytes: 1048576 }}
exporters:
{exporter}
{extensions}
service:
  telemetry:
    logs: {{ encoding: json }}
    metrics: {{ address: "127.0.0.1:{metrics}" }}
  oom_score_adj: null
  pipelines:
    logs: {{ receivers: [otlp], exporters: [{name}] }}
"#,
        name = exporter
            .trim_start()
            .split(':')
            .next()
            .expect("exporter name"),
    )
}

/// Floods the agent until `enough` holds for its output, `OFFERED` bytes
/// were offered and the queue was seen full (`full_at` requests waiting),
/// sampling the queue size (asserted within `capacity`) and memory. Returns
/// the acknowledged records.
fn flood_while_hanging(
    test: &str,
    agent: &Oomscope,
    grpc: u16,
    metrics_port: u16,
    exporter: &str,
    (capacity, full_at): (f64, f64),
    enough: impl Fn(&str) -> bool,
) -> Vec<String> {
    let pid = agent.pid();
    let rss_start = proc_status_bytes(pid, "VmRSS").expect("VmRSS");
    let run = format!("{:08x}", rand::random::<u32>());
    // More calls than the receiver holds (16 of 64 KiB): the others are
    // refused at once and offered again, so the volume offered is large.
    let flood = Flood::start(grpc, &run, 32);
    let mut max_queue = 0.0_f64;
    let deadline = Instant::now() + TIMEOUT;
    loop {
        if let Some(size) = own_metric(
            metrics_port,
            "otelcol_exporter_queue_size",
            &[("exporter", exporter)],
        ) {
            assert!(
                size <= capacity,
                "queue size {size} above its capacity {capacity}"
            );
            max_queue = max_queue.max(size);
        }
        if flood.offered() >= OFFERED && max_queue >= full_at && enough(&agent.output()) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{test}: offered {} bytes, queue at most {max_queue}; agent:\n{}",
            flood.offered(),
            agent.output()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let offered = flood.offered();
    let (acked, refused) = flood.stop();
    let hwm = proc_status_bytes(pid, "VmHWM").expect("VmHWM");
    let _ = writeln!(
        std::io::stderr(),
        "{test}: offered {} MiB in {} requests ({refused} refused), {} records acknowledged; \
         RSS at start {} MiB, peak {} MiB; queue at most {max_queue}",
        offered >> 20,
        offered / (RECORDS * BODY) as u64,
        acked.len(),
        rss_start >> 20,
        hwm >> 20
    );
    assert!(
        hwm <= rss_start + RSS_GROWTH_BOUND,
        "peak RSS {hwm} bytes grew more than {RSS_GROWTH_BOUND} over {rss_start} bytes"
    );
    assert!(!acked.is_empty(), "nothing was acknowledged at all");
    acked
}

/// Waits until every acknowledged record arrived; prints the duplicates.
fn all_arrive(test: &str, rotel: &Rotel, acked: &[String], agent: &Oomscope) {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let counts = occurrences(acked, &rotel.received().log_bodies());
        let (missing, duplicates) = missing_and_duplicates(&counts);
        if missing.is_empty() {
            let _ = writeln!(
                std::io::stderr(),
                "{test}: all {} acknowledged records arrived, {duplicates} duplicates",
                acked.len()
            );
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{} of {} acknowledged records never arrived:\n{}",
            missing.len(),
            acked.len(),
            agent.output()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn an_endpoint_that_never_answers_times_out_and_stays_bounded() {
    const TEST: &str = "an_endpoint_that_never_answers_times_out_and_stays_bounded";
    let started = Instant::now();
    let rotel = Rotel::start();
    let proxy = Proxy::start(rotel.grpc_addr(), ProxyMode::Blackhole);
    let (grpc, metrics) = (free_port(), free_port());
    // In-memory queue, retrying forever: what was acknowledged is held
    // (within the queue) until the endpoint works.
    let exporter = format!(
        r#"  otlp:
    endpoint: "{}"
    tls: {{ insecure: true }}
    timeout: 1s
    retry_on_failure: {{ initial_interval: 100ms, max_interval: 1s, max_elapsed_time: 0s }}
    sending_queue: {{ queue_size: 10, num_consumers: 2 }}"#,
        proxy.addr()
    );
    let mut agent = Oomscope::start(&config(grpc, metrics, &exporter, ""), &[]);
    agent.wait_ready(std::net::SocketAddr::from(([127, 0, 0, 1], grpc)), TIMEOUT);
    // In memory, requests being exported are not in the queue: it fills up.
    let acked = flood_while_hanging(TEST, &agent, grpc, metrics, "otlp", (10.0, 10.0), |out| {
        logged_timeouts(out, "Exporting failed. Will retry") >= 10
    });
    assert!(proxy.accepted() >= 1, "the exporter never connected");
    assert_eq!(
        rotel.received().logs.len(),
        0,
        "nothing can pass a blackhole"
    );

    proxy.set_mode(ProxyMode::Forward);
    all_arrive(TEST, &rotel, &acked, &agent);
    let output = agent.output();
    assert!(!has_panic(&output), "{output}");
    assert!(
        !lines_with(&output, "Exporting succeeded again").is_empty(),
        "{output}"
    );
    let (status, clean) = agent.stop(TIMEOUT);
    assert!(clean && status.success(), "{}", agent.output());
    let _ = writeln!(std::io::stderr(), "{TEST}: took {:?}", started.elapsed());
}

#[test]
fn an_endpoint_that_answers_after_30s_times_out_and_stays_bounded() {
    const TEST: &str = "an_endpoint_that_answers_after_30s_times_out_and_stays_bounded";
    let started = Instant::now();
    let rotel = Rotel::start();
    let proxy = Proxy::start(
        rotel.http_addr(),
        ProxyMode::DelayAnswers(Duration::from_secs(30)),
    );
    let state = tempfile::tempdir().expect("tempdir");
    let (grpc, metrics) = (free_port(), free_port());
    // Persistent queue, giving up on a request after 2 s: it goes back to
    // the queue and is tried again, never dropped.
    let exporter = format!(
        r#"  otlphttp:
    endpoint: "http://{}"
    timeout: 5s
    retry_on_failure: {{ initial_interval: 100ms, max_interval: 1s, max_elapsed_time: 2s }}
    sending_queue: {{ queue_size: 20, num_consumers: 2, storage: file_storage }}"#,
        proxy.addr()
    );
    let extensions = format!(
        "extensions:\n  file_storage: {{ directory: \"{}\" }}\n",
        state.path().display()
    );
    let config = config(grpc, metrics, &exporter, &extensions)
        .replace("service:\n", "service:\n  extensions: [file_storage]\n");
    let mut agent = Oomscope::start(&config, &[]);
    agent.wait_ready(std::net::SocketAddr::from(([127, 0, 0, 1], grpc)), TIMEOUT);
    // On disk, the two requests being exported keep their places.
    let acked = flood_while_hanging(
        TEST,
        &agent,
        grpc,
        metrics,
        "otlphttp",
        (20.0, 18.0),
        |out| logged_timeouts(out, "The request stays in the persistent queue") >= 2,
    );

    proxy.set_mode(ProxyMode::Forward);
    all_arrive(TEST, &rotel, &acked, &agent);
    let output = agent.output();
    assert!(!has_panic(&output), "{output}");
    let (status, clean) = agent.stop(TIMEOUT);
    assert!(clean && status.success(), "{}", agent.output());
    let _ = writeln!(std::io::stderr(), "{TEST}: took {:?}", started.elapsed());
}
