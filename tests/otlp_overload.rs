//! Ten times the sustainable OTLP load for 60 s, end to end:
//! senders (OTLP/HTTP and OTLP/gRPC) -> oomscope (otlp receiver ->
//! memory_limiter -> batch -> otlp exporter) -> a slow link -> rotel.
//!
//! The overload is certain by construction and measured in the same run: the
//! link from the agent to rotel is throttled (a TCP relay in this test that
//! paces the bytes the agent sends), so what the agent can forward is small
//! and does not depend on this machine's speed; the test measures that rate
//! first, then offers ten times it for 60 s. The sending queue is large, so
//! the backlog is bounded by the memory limiter alone.
//!
//! Outcomes asserted (never timing): the agent's peak resident memory
//! (sampled `VmRSS` and the kernel's `VmHWM`) stays under the limiter's
//! `limit_mib`; senders were refused with 503 + `Retry-After` (HTTP) and
//! UNAVAILABLE + `RetryInfo` (gRPC), some of them by the memory limiter;
//! every record answered 200/OK is counted at rotel, and none more; the agent
//! accepts data again once the backlog has drained, never panicked, and
//! stops cleanly.

mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use prost::Message as _;
use rand::{Rng, SeedableRng as _};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tonic_types::StatusExt as _;

use common::adversarial::{
    confine, logs_request, seeded_rng, RawGrpc, RssWatch, LOGS_EXPORT_PATH, MIB,
};
use common::oomscope::Oomscope;
use common::rotel::Rotel;
use common::{free_port, skip};

const TEST: &str = "otlp_overload";
/// The issue's figure.
const LOAD: Duration = Duration::from_secs(60);
/// Only there so that a broken agent or peer fails the test instead of
/// hanging it.
const TIMEOUT: Duration = Duration::from_secs(60);
/// Bounds the wait for the backlog to reach rotel once the link is fast.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(300);
/// The memory limiter's hard limit, and its headroom for spikes.
const LIMIT_MIB: u64 = 100;
const SPIKE_MIB: u64 = 20;
/// The safety net around the agent: far above the limit.
const CGROUP_LIMIT: u64 = 1024 * MIB;
/// The link from the agent to rotel while the load lasts.
const LINK_BYTES_PER_SEC: u64 = 2 * 1024 * 1024;
/// Records per request, and body length of each.
const RECORDS_PER_REQUEST: usize = 200;
const BODY_LEN: usize = 400;
/// Requests of the calibration.
const CALIBRATION_REQUESTS: usize = 20;
/// Concurrent senders of each protocol during the load.
const SENDERS_PER_PROTOCOL: usize = 8;
const OVERLOAD_FACTOR: f64 = 10.0;

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

// ---------------------------------------------------------------------------
// The slow link: a TCP relay that paces the bytes from the agent to rotel.

/// Relays `listen` -> `upstream`; bytes towards upstream are paced at the
/// rate in `rate` (bytes per second, shared by every connection; 0 means
/// unpaced). Answers flow back unpaced.
struct SlowLink {
    addr: SocketAddr,
    rate: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl SlowLink {
    async fn start(upstream: SocketAddr, bytes_per_sec: u64) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind relay");
        let addr = listener.local_addr().expect("relay addr");
        let rate = Arc::new(AtomicU64::new(bytes_per_sec));
        // When the next byte may leave, for every connection together.
        let next_slot = Arc::new(Mutex::new(Instant::now()));
        let task = {
            let rate = Arc::clone(&rate);
            tokio::spawn(async move {
                while let Ok((down, _)) = listener.accept().await {
                    let Ok(up) = TcpStream::connect(upstream).await else {
                        continue;
                    };
                    let _ = down.set_nodelay(true);
                    let _ = up.set_nodelay(true);
                    let (mut down_r, mut down_w) = down.into_split();
                    let (mut up_r, mut up_w) = up.into_split();
                    let (rate, next_slot) = (Arc::clone(&rate), Arc::clone(&next_slot));
                    tokio::spawn(async move {
                        let mut buf = vec![0u8; 8192];
                        loop {
                            let n = match down_r.read(&mut buf).await {
                                Ok(0) | Err(_) => break,
                                Ok(n) => n,
                            };
                            let bps = rate.load(Ordering::Relaxed);
                            if bps > 0 {
                                let until = {
                                    let mut next = next_slot.lock().expect("lock");
                                    let start = (*next).max(Instant::now());
                                    *next = start + Duration::from_secs_f64(n as f64 / bps as f64);
                                    *next
                                };
                                tokio::time::sleep_until(until.into()).await;
                            }
                            if up_w.write_all(&buf[..n]).await.is_err() {
                                break;
                            }
                        }
                        let _ = up_w.shutdown().await;
                    });
                    tokio::spawn(async move {
                        let _ = tokio::io::copy(&mut up_r, &mut down_w).await;
                        let _ = down_w.shutdown().await;
                    });
                }
            })
        };
        SlowLink { addr, rate, task }
    }

    fn unthrottle(&self) {
        self.rate.store(0, Ordering::Relaxed);
    }
}

impl Drop for SlowLink {
    fn drop(&mut self) {
        self.task.abort();
    }
}

// ---------------------------------------------------------------------------
// Senders.

/// How the agent answered one request.
#[derive(Debug)]
enum Answer {
    Accepted,
    /// 503 / UNAVAILABLE: with a retry hint? Did the memory limiter refuse?
    Refused {
        hint: bool,
        by_memory_limiter: bool,
    },
    /// Anything else: a wrong status, a reset, no answer.
    Other(String),
}

#[derive(Debug, Default)]
struct Tally {
    sent: u64,
    accepted_records: u64,
    refused: u64,
    refused_with_hint: u64,
    refused_by_memory_limiter: u64,
    other: Vec<String>,
}

impl Tally {
    fn add(&mut self, answer: Answer) {
        self.sent += 1;
        match answer {
            Answer::Accepted => self.accepted_records += RECORDS_PER_REQUEST as u64,
            Answer::Refused {
                hint,
                by_memory_limiter,
            } => {
                self.refused += 1;
                self.refused_with_hint += u64::from(hint);
                self.refused_by_memory_limiter += u64::from(by_memory_limiter);
            }
            Answer::Other(what) => {
                if self.other.len() < 20 {
                    self.other.push(what);
                }
            }
        }
    }

    fn merge(&mut self, other: Tally) {
        self.sent += other.sent;
        self.accepted_records += other.accepted_records;
        self.refused += other.refused;
        self.refused_with_hint += other.refused_with_hint;
        self.refused_by_memory_limiter += other.refused_by_memory_limiter;
        self.other.extend(other.other);
    }
}

const MEMORY_REFUSAL: &str = "high memory usage";

async fn send_http(client: &reqwest::Client, url: &str, body: Bytes) -> Answer {
    let sent = client
        .post(url)
        .header("content-type", "application/x-protobuf")
        .body(body)
        .timeout(TIMEOUT)
        .send()
        .await;
    let response = match sent {
        Ok(r) => r,
        Err(e) => return Answer::Other(format!("http: {e}")),
    };
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let body = response.bytes().await.unwrap_or_default();
    match status {
        200 => Answer::Accepted,
        503 => {
            let message = tonic_types::Status::decode(body)
                .map(|s| s.message)
                .unwrap_or_default();
            Answer::Refused {
                hint: retry_after.is_some_and(|s| s >= 1),
                by_memory_limiter: message.contains(MEMORY_REFUSAL),
            }
        }
        other => Answer::Other(format!("http status {other}")),
    }
}

async fn send_grpc(client: &mut RawGrpc, message: Bytes) -> Answer {
    let call = tokio::time::timeout(TIMEOUT, client.call(LOGS_EXPORT_PATH, message)).await;
    match call {
        Err(_) => Answer::Other(format!("grpc: no answer within {TIMEOUT:?}")),
        Ok(Ok(_)) => Answer::Accepted,
        Ok(Err(status)) if status.code() == tonic::Code::Unavailable => Answer::Refused {
            hint: status
                .get_details_retry_info()
                .and_then(|r| r.retry_delay)
                .is_some(),
            by_memory_limiter: status.message().contains(MEMORY_REFUSAL),
        },
        Ok(Err(status)) => Answer::Other(format!("grpc: {status:?}")),
    }
}

/// A request of [`RECORDS_PER_REQUEST`] records with random bodies (no
/// compression on the link, so their size is what the link carries).
fn request(rng: &mut impl Rng, sender: &str) -> ExportLogsServiceRequest {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    let bodies: Vec<String> = (0..RECORDS_PER_REQUEST)
        .map(|i| {
            let noise: String = (0..BODY_LEN)
                .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
                .collect();
            format!("{sender} {i} {noise}")
        })
        .collect();
    logs_request(&bodies)
}

/// Sends requests at `per_sec` until `until`, paced: a request that takes
/// longer than its slot delays the next, nothing else does. Refusals are
/// not retried (the load stays what it is).
async fn http_sender(url: String, per_sec: f64, until: Instant, seed: u64) -> Tally {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let bodies: Vec<Bytes> = (0..4)
        .map(|i| Bytes::from(request(&mut rng, &format!("http-{seed}-{i}")).encode_to_vec()))
        .collect();
    let client = reqwest::Client::new();
    let every = Duration::from_secs_f64(1.0 / per_sec);
    let mut tally = Tally::default();
    let mut next = Instant::now();
    let mut i = 0;
    while Instant::now() < until {
        tally.add(send_http(&client, &url, bodies[i % bodies.len()].clone()).await);
        i += 1;
        next += every;
        tokio::time::sleep_until(next.into()).await;
    }
    tally
}

async fn grpc_sender(endpoint: String, per_sec: f64, until: Instant, seed: u64) -> Tally {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let messages: Vec<Bytes> = (0..4)
        .map(|i| Bytes::from(request(&mut rng, &format!("grpc-{seed}-{i}")).encode_to_vec()))
        .collect();
    let mut client = RawGrpc::connect(&endpoint).await.expect("connect");
    let every = Duration::from_secs_f64(1.0 / per_sec);
    let mut tally = Tally::default();
    let mut next = Instant::now();
    let mut i = 0;
    while Instant::now() < until {
        tally.add(send_grpc(&mut client, messages[i % messages.len()].clone()).await);
        i += 1;
        next += every;
        tokio::time::sleep_until(next.into()).await;
    }
    tally
}

fn config(grpc: u16, http: u16, backend: SocketAddr) -> String {
    format!(
        r#"
receivers:
  otlp:
    protocols:
      grpc: {{ endpoint: "127.0.0.1:{grpc}" }}
      http: {{ endpoint: "127.0.0.1:{http}" }}
processors:
  memory_limiter:
    check_interval: 1s
    limit_mib: {LIMIT_MIB}
    spike_limit_mib: {SPIKE_MIB}
  batch: {{ timeout: 200ms, send_batch_size: 1000, send_batch_max_size: 1000 }}
exporters:
  otlp:
    endpoint: "{backend}"
    tls: {{ insecure: true }}
    # The link carries what the records weigh.
    compression: none
    # A slow link must not time out an attempt that rotel then also receives
    # (a retry would count it twice).
    timeout: 120s
    retry_on_failure: {{ initial_interval: 100ms, max_interval: 1s, max_elapsed_time: 0 }}
    # Larger than the memory limit can hold: memory bounds the backlog.
    sending_queue: {{ queue_size: 20000, num_consumers: 4 }}
service:
  telemetry: {{ metrics: {{ address: "" }} }}
  oom_score_adj: null
  shutdown_timeout: 30s
  pipelines:
    logs: {{ receivers: [otlp], processors: [memory_limiter, batch], exporters: [otlp] }}
"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ten_times_the_sustainable_load_for_60s() {
    let rotel = Rotel::start_counting();
    let link = SlowLink::start(rotel.grpc_addr(), LINK_BYTES_PER_SEC).await;
    let (grpc, http) = (free_port(), free_port());
    let mut agent = Oomscope::start(&config(grpc, http, link.addr), &[]);
    let Some(_cgroup) = confine(agent.pid(), CGROUP_LIMIT) else {
        skip(
            TEST,
            "no memory cgroup to confine the agent in (needs root and a memory controller)",
        );
        return;
    };
    agent.wait_ready(addr(grpc), TIMEOUT);
    agent.wait_ready(addr(http), TIMEOUT);
    let watch = RssWatch::start(agent.pid());
    let grpc_endpoint = format!("http://127.0.0.1:{grpc}");
    let http_url = format!("http://127.0.0.1:{http}/v1/logs");
    let mut rng = seeded_rng(TEST);

    // What the agent sustains: records per second from the first request
    // sent to the last record counted at rotel.
    let calibration: Vec<ExportLogsServiceRequest> = (0..CALIBRATION_REQUESTS)
        .map(|i| request(&mut rng, &format!("calibration-{i}")))
        .collect();
    let started = Instant::now();
    let mut client = RawGrpc::connect(&grpc_endpoint).await.expect("connect");
    for r in &calibration {
        client
            .call(LOGS_EXPORT_PATH, Bytes::from(r.encode_to_vec()))
            .await
            .expect("calibration accepted");
    }
    let calibrated = (CALIBRATION_REQUESTS * RECORDS_PER_REQUEST) as u64;
    assert_eq!(
        rotel.wait_for_log_count(calibrated, DRAIN_TIMEOUT),
        calibrated,
        "calibration records at rotel"
    );
    let sustained = calibrated as f64 / started.elapsed().as_secs_f64();
    let offered = sustained * OVERLOAD_FACTOR;
    let senders = 2 * SENDERS_PER_PROTOCOL;
    let per_sender = offered / RECORDS_PER_REQUEST as f64 / senders as f64;
    eprintln!(
        "{TEST}: sustained {sustained:.0} records/s; offering {offered:.0} records/s \
         ({per_sender:.2} requests/s from each of {senders} senders) for {LOAD:?}"
    );

    let until = Instant::now() + LOAD;
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..SENDERS_PER_PROTOCOL {
        let (url, seed) = (http_url.clone(), rng.random());
        tasks.spawn(async move { (true, http_sender(url, per_sender, until, seed).await) });
        let (endpoint, seed) = (grpc_endpoint.clone(), rng.random());
        tasks.spawn(async move { (false, grpc_sender(endpoint, per_sender, until, seed).await) });
    }
    let (mut http_tally, mut grpc_tally) = (Tally::default(), Tally::default());
    while let Some(joined) = tasks.join_next().await {
        match joined.expect("sender") {
            (true, t) => http_tally.merge(t),
            (false, t) => grpc_tally.merge(t),
        }
    }
    let load_peak = watch.now();
    eprintln!("{TEST}: HTTP {http_tally:?}\n{TEST}: gRPC {grpc_tally:?}");

    // The backlog drains over a fast link.
    link.unthrottle();
    let accepted = calibrated + http_tally.accepted_records + grpc_tally.accepted_records;
    let counted = rotel.wait_for_log_count(accepted, DRAIN_TIMEOUT);

    // Once drained, the limiter lets data in again.
    let recovered = {
        let deadline = Instant::now() + DRAIN_TIMEOUT;
        let probe = Bytes::from(request(&mut rng, "after-the-storm").encode_to_vec());
        loop {
            match send_grpc(&mut client, probe.clone()).await {
                Answer::Accepted => break true,
                _ if Instant::now() < deadline => tokio::time::sleep(Duration::from_secs(1)).await,
                _ => break false,
            }
        }
    };
    let peak = watch.finish();
    let (status, clean) = agent.stop(TIMEOUT);
    let output = agent.output();
    eprintln!(
        "{TEST}: peak RSS {} MiB (sampled {} MiB, VmHWM {} MiB; {} MiB when the load ended), limit {LIMIT_MIB} MiB; \
         {accepted} records accepted, {counted} counted at rotel",
        peak.peak() / MIB,
        peak.max_sampled / MIB,
        peak.hwm / MIB,
        load_peak.peak() / MIB,
    );

    assert!(
        http_tally.other.is_empty() && grpc_tally.other.is_empty(),
        "every request gets 200/OK or a refusal: HTTP {:?}, gRPC {:?}",
        http_tally.other,
        grpc_tally.other
    );
    for (name, t) in [("HTTP", &http_tally), ("gRPC", &grpc_tally)] {
        assert!(
            t.refused > 0,
            "{name}: no refusal under ten times the load: {t:?}"
        );
        assert_eq!(
            t.refused_with_hint, t.refused,
            "{name}: every refusal carries a retry hint: {t:?}"
        );
        assert!(t.accepted_records > 0, "{name}: nothing accepted: {t:?}");
    }
    assert!(
        http_tally.refused_by_memory_limiter + grpc_tally.refused_by_memory_limiter > 0,
        "the memory limiter refused data"
    );
    assert!(
        peak.peak() < LIMIT_MIB * MIB,
        "peak RSS {} MiB is not under the memory_limiter's limit of {LIMIT_MIB} MiB",
        peak.peak() / MIB
    );
    assert_eq!(
        counted, accepted,
        "every record answered 200/OK reaches rotel, once"
    );
    assert!(
        recovered,
        "the agent accepts data again after the backlog drained"
    );
    assert!(!output.contains("panicked"), "{output}");
    assert!(clean && status.success(), "{status:?}\n{output}");
}
