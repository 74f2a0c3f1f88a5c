//! The running service as a whole: drain on SIGTERM, one receiver feeding
//! several pipelines, the agent's own telemetry (Prometheus and OTLP push),
//! self-protection, hostile clients that must not disturb it, and
//! configured secrets kept out of its log.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

use common::free_port;
use common::oomscope::Oomscope;
use common::otlp::{send_logs_grpc, FileContents};
use common::rotel::Rotel;

const TIMEOUT: Duration = Duration::from_secs(60);

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

fn bodies(tag: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{tag} record {i}")).collect()
}

fn http_get(port: u16, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr(port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .expect("write");
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    let status = out
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (status, out)
}

/// Data held by the batch processor (long timeout) and in the exporter's
/// queue is flushed when the agent gets SIGTERM, not lost.
#[tokio::test(flavor = "multi_thread")]
async fn sigterm_drains_and_flushes_what_is_in_flight() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("out.jsonl");
    let (grpc, metrics) = (free_port(), free_port());
    let config = format!(
        r#"
receivers:
  otlp:
    protocols:
      grpc: {{ endpoint: "127.0.0.1:{grpc}" }}
processors:
  batch: {{ timeout: 1h, send_batch_size: 100000 }}
exporters:
  file: {{ path: "{out}", flush_interval: 1h }}
service:
  telemetry: {{ metrics: {{ address: "127.0.0.1:{metrics}" }} }}
  oom_score_adj: null
  pipelines:
    logs: {{ receivers: [otlp], processors: [batch], exporters: [file] }}
"#,
        out = out.display()
    );
    let mut agent = Oomscope::start(&config, &[]);
    agent.wait_ready(addr(grpc), TIMEOUT);
    let sent = bodies("drain", 250);
    send_logs_grpc(&format!("http://127.0.0.1:{grpc}"), &sent, 50, TIMEOUT).await;
    // Accepted, but held by the batch processor (1h timeout, size not reached).
    let (_, m) = http_get(metrics, "/metrics");
    assert!(
        m.contains(
            r#"otelcol_receiver_accepted_log_records_total{receiver="otlp",transport="grpc"} 250"#
        ),
        "own metrics should count the accepted records:\n{m}"
    );
    assert_eq!(
        FileContents::read(&out).log_bodies.len(),
        0,
        "nothing may be written before the flush"
    );

    let (status, clean) = agent.stop(TIMEOUT);
    assert!(clean && status.success(), "{status:?}\n{}", agent.output());
    let mut got = FileContents::read(&out).log_bodies;
    got.sort();
    let mut want = sent.clone();
    want.sort();
    assert_eq!(got, want, "SIGTERM must flush the batch and the file");
}

/// One receiver in two pipelines of one signal: each pipeline gets
/// everything, through its own processors.
#[tokio::test(flavor = "multi_thread")]
async fn one_receiver_feeds_several_pipelines() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (a, b) = (dir.path().join("a.jsonl"), dir.path().join("b.jsonl"));
    let grpc = free_port();
    let config = format!(
        r#"
receivers:
  otlp:
    protocols:
      grpc: {{ endpoint: "127.0.0.1:{grpc}" }}
processors:
  resource/b:
    detect: false
    attributes:
      - {{ key: pipeline, value: b, action: insert }}
exporters:
  file/a: {{ path: "{a}", flush_interval: 100ms }}
  file/b: {{ path: "{b}", flush_interval: 100ms }}
service:
  telemetry: {{ metrics: {{ address: "" }} }}
  oom_score_adj: null
  pipelines:
    logs/a: {{ receivers: [otlp], exporters: [file/a] }}
    logs/b: {{ receivers: [otlp], processors: [resource/b], exporters: [file/b] }}
"#,
        a = a.display(),
        b = b.display()
    );
    let mut agent = Oomscope::start(&config, &[]);
    agent.wait_ready(addr(grpc), TIMEOUT);
    let sent = bodies("fanout", 60);
    send_logs_grpc(&format!("http://127.0.0.1:{grpc}"), &sent, 20, TIMEOUT).await;
    let got_a = FileContents::wait_for(&a, TIMEOUT, |c| c.log_bodies.len() >= 60);
    let got_b = FileContents::wait_for(&b, TIMEOUT, |c| c.log_bodies.len() >= 60);
    assert_eq!(got_a.log_bodies, sent);
    assert_eq!(got_b.log_bodies, sent);
    let has_attr =
        |r: &serde_json::Value| common::otlp::json_attr(&r["attributes"], "pipeline").is_some();
    assert!(
        got_b.log_resources.iter().all(has_attr),
        "pipeline b's processor applies in b"
    );
    assert!(
        !got_a.log_resources.iter().any(has_attr),
        "and only in b (the payload is shared, not mutated)"
    );
    let (status, clean) = agent.stop(TIMEOUT);
    assert!(clean && status.success(), "{}", agent.output());
}

/// The agent's own metrics are pushed over OTLP (opentelemetry SDK +
/// opentelemetry-otlp) to a real backend.
#[tokio::test(flavor = "multi_thread")]
async fn own_metrics_are_pushed_over_otlp() {
    let backend = Rotel::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let grpc = free_port();
    let config = format!(
        r#"
receivers:
  otlp:
    protocols:
      grpc: {{ endpoint: "127.0.0.1:{grpc}" }}
exporters:
  file: {{ path: "{out}" }}
service:
  telemetry:
    metrics:
      address: ""
      otlp: {{ endpoint: "{backend}", interval: 500ms }}
  oom_score_adj: null
  pipelines:
    logs: {{ receivers: [otlp], exporters: [file] }}
"#,
        out = dir.path().join("out.jsonl").display(),
        backend = backend.grpc_endpoint(),
    );
    let mut agent = Oomscope::start(&config, &[]);
    agent.wait_ready(addr(grpc), TIMEOUT);
    send_logs_grpc(
        &format!("http://127.0.0.1:{grpc}"),
        &bodies("own", 7),
        7,
        TIMEOUT,
    )
    .await;
    // Both series: the exporter counts `sent` after the receiver counted
    // `accepted` (through the file exporter's queue), so one push can carry
    // the first without the second.
    let got = backend.wait_for(TIMEOUT, |r| {
        r.points_of("otelcol_receiver_accepted_log_records")
            .iter()
            .any(|p| p.value.as_deref() == Some("7"))
            && !r.points_of("otelcol_exporter_sent_log_records").is_empty()
    });
    let points = got.points_of("otelcol_receiver_accepted_log_records");
    assert!(
        points.iter().any(
            |p| p.value.as_deref() == Some("7") && p.attributes.get("receiver") == Some("otlp")
        ),
        "own metric not pushed: {:?}",
        got.data_points
            .iter()
            .map(|p| &p.metric)
            .collect::<Vec<_>>()
    );
    assert!(!got
        .points_of("otelcol_exporter_sent_log_records")
        .is_empty());
    let (status, clean) = agent.stop(TIMEOUT);
    assert!(clean && status.success(), "{}", agent.output());
}

/// A Prometheus port already taken is a warning, not a failure; and the
/// agent sets its own oom_score_adj (raising it needs no privilege, so the
/// test uses a positive value to check the mechanism on any host).
#[tokio::test(flavor = "multi_thread")]
async fn taken_metrics_port_is_not_fatal_and_oom_score_adj_is_set() {
    let squatter = TcpListener::bind("127.0.0.1:0").expect("bind");
    let taken = squatter.local_addr().expect("addr").port();
    let dir = tempfile::tempdir().expect("tempdir");
    let grpc = free_port();
    let config = format!(
        r#"
receivers:
  otlp:
    protocols:
      grpc: {{ endpoint: "127.0.0.1:{grpc}" }}
exporters:
  file: {{ path: "{out}" }}
service:
  telemetry: {{ metrics: {{ address: "127.0.0.1:{taken}" }} }}
  oom_score_adj: 321
  pipelines:
    logs: {{ receivers: [otlp], exporters: [file] }}
"#,
        out = dir.path().join("out.jsonl").display(),
    );
    let mut agent = Oomscope::start(&config, &[]);
    agent.wait_ready(addr(grpc), TIMEOUT);
    assert!(
        agent.output().contains("cannot serve own metrics"),
        "{}",
        agent.output()
    );
    let adj =
        std::fs::read_to_string(format!("/proc/{}/oom_score_adj", agent.pid())).expect("read");
    assert_eq!(adj.trim(), "321");
    drop(squatter);
    let (status, clean) = agent.stop(TIMEOUT);
    assert!(clean && status.success(), "{}", agent.output());
}

/// Garbage, half-open and slow connections on both OTLP ports: the agent
/// answers with errors or drops them, keeps serving, and what it accepted
/// before and after is all delivered.
#[tokio::test(flavor = "multi_thread")]
async fn hostile_clients_do_not_disturb_the_service() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("out.jsonl");
    let (grpc, http) = (free_port(), free_port());
    let config = format!(
        r#"
receivers:
  otlp:
    protocols:
      grpc: {{ endpoint: "127.0.0.1:{grpc}" }}
      http: {{ endpoint: "127.0.0.1:{http}", max_request_body_size: 65536 }}
exporters:
  file: {{ path: "{out}", flush_interval: 100ms }}
service:
  telemetry: {{ metrics: {{ address: "" }} }}
  oom_score_adj: null
  pipelines:
    logs: {{ receivers: [otlp], exporters: [file] }}
"#,
        out = out.display()
    );
    let mut agent = Oomscope::start(&config, &[]);
    agent.wait_ready(addr(grpc), TIMEOUT);
    agent.wait_ready(addr(http), TIMEOUT);
    let endpoint = format!("http://127.0.0.1:{grpc}");
    let before = bodies("before-abuse", 20);
    send_logs_grpc(&endpoint, &before, 10, TIMEOUT).await;

    // Half-open and slow connections, held while the rest goes on.
    let mut idle: Vec<TcpStream> = (0..20)
        .map(|i| TcpStream::connect(addr(if i % 2 == 0 { grpc } else { http })).expect("connect"))
        .collect();
    for s in idle.iter_mut().take(5) {
        let _ = s.write_all(b"POST /v1/logs HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n");
    }
    // Garbage bytes on the gRPC port (not HTTP/2) and on the HTTP port.
    for port in [grpc, http] {
        let mut s = TcpStream::connect(addr(port)).expect("connect");
        let _ = s.write_all(&[0xff; 4096]);
    }
    // Malformed and hostile HTTP requests.
    let client = reqwest::Client::new();
    let url = format!("http://127.0.0.1:{http}/v1/logs");
    let r = client
        .post(&url)
        .header("content-type", "application/x-protobuf")
        .body(vec![0xde, 0xad, 0xbe, 0xef])
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 400);
    let r = client
        .post(&url)
        .header("content-type", "application/json")
        .body("{\"resourceLogs\": [")
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 400);
    let r = client
        .post(&url)
        .header("content-type", "text/plain")
        .body("hello")
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 415);
    let r = client.get(&url).send().await.expect("send");
    assert_eq!(r.status(), 405);
    let r = client
        .post(&url)
        .header("content-type", "application/x-protobuf")
        .body(vec![0u8; 100_000])
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 413);
    // A gzip bomb: 64 KiB of compressed zeros expanding far past the limit.
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    enc.write_all(&vec![0u8; 50 << 20]).expect("gzip");
    let bomb = enc.finish().expect("gzip");
    let r = client
        .post(&url)
        .header("content-type", "application/x-protobuf")
        .header("content-encoding", "gzip")
        .body(bomb)
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 413);

    let after = bodies("after-abuse", 20);
    send_logs_grpc(&endpoint, &after, 10, TIMEOUT).await;
    let got = FileContents::wait_for(&out, TIMEOUT, |c| c.log_bodies.len() >= 40);
    let want: Vec<String> = before.iter().chain(&after).cloned().collect();
    assert_eq!(
        got.log_bodies, want,
        "accepted data must all arrive, in order"
    );
    assert!(
        agent.try_status().is_none(),
        "the agent must still run:\n{}",
        agent.output()
    );
    drop(idle);
    let (status, clean) = agent.stop(TIMEOUT);
    assert!(clean && status.success(), "{}", agent.output());
    assert!(!agent.output().contains("panicked"), "{}", agent.output());
}

/// A backend that does not answer fills the exporter's bounded queue; then
/// the receiver pushes back (UNAVAILABLE with a retry delay) instead of
/// buffering more. Once the backend is up, everything that was accepted
/// arrives.
#[tokio::test(flavor = "multi_thread")]
async fn slow_backend_pushes_back_to_the_sender() {
    use opentelemetry_proto::tonic::collector::logs::v1::logs_service_client::LogsServiceClient;
    use tonic_types::StatusExt as _;

    let mut backend = Rotel::start();
    backend.stop();
    let grpc = free_port();
    let config = format!(
        r#"
receivers:
  otlp:
    protocols:
      grpc: {{ endpoint: "127.0.0.1:{grpc}" }}
exporters:
  otlp:
    endpoint: "{backend}"
    tls: {{ insecure: true }}
    retry_on_failure: {{ initial_interval: 100ms, max_interval: 200ms, max_elapsed_time: 0 }}
    sending_queue: {{ queue_size: 3, num_consumers: 1 }}
service:
  telemetry: {{ metrics: {{ address: "" }} }}
  oom_score_adj: null
  pipelines:
    logs: {{ receivers: [otlp], exporters: [otlp] }}
"#,
        backend = backend.grpc_addr()
    );
    let mut agent = Oomscope::start(&config, &[]);
    agent.wait_ready(addr(grpc), TIMEOUT);
    let mut client = LogsServiceClient::connect(format!("http://127.0.0.1:{grpc}"))
        .await
        .expect("connect");

    // One request in the worker's hands plus three queued fit; the next
    // ones must be refused, not buffered.
    let mut accepted = Vec::new();
    let mut refusal = None;
    for i in 0..10 {
        let body = format!("pushback record {i}");
        let request = common::otlp::logs_request(std::slice::from_ref(&body));
        match client.export(request).await {
            Ok(_) => accepted.push(body),
            Err(status) => {
                refusal = Some(status);
                break;
            }
        }
    }
    let status = refusal.expect("the receiver must push back once the queue is full");
    assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
    assert!(
        status.get_details_retry_info().is_some(),
        "a retry delay tells the sender when to come back"
    );
    assert!(
        accepted.len() <= 5,
        "at most the queue's worth is buffered: {accepted:?}"
    );

    backend.restart();
    let got = backend.wait_for_logs(accepted.len(), TIMEOUT);
    let bodies = got.log_bodies();
    for b in &accepted {
        assert!(bodies.contains(b), "accepted {b:?} never arrived");
    }
    let (status, clean) = agent.stop(TIMEOUT);
    assert!(clean && status.success(), "{}", agent.output());
}

/// Credentials in the configuration stay out of the agent's log: an
/// `otlphttp` endpoint with a password and an `Authorization` header, sent
/// to a backend that refuses every request, gives a logged export error
/// that names the endpoint without the password and never the header.
#[tokio::test(flavor = "multi_thread")]
async fn configured_secrets_are_masked_in_the_log() {
    // A backend that answers every request 400 (a permanent error).
    let backend = TcpListener::bind("127.0.0.1:0").expect("bind");
    let backend_port = backend.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        for stream in backend.incoming().take(16) {
            let Ok(mut s) = stream else { continue };
            let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") && head.len() < 64 * 1024 {
                match s.read(&mut byte) {
                    Ok(1) => head.push(byte[0]),
                    _ => break,
                }
            }
            let _ = s.write_all(
                b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            );
        }
    });
    let grpc = free_port();
    let config = format!(
        r#"
receivers:
  otlp:
    protocols:
      grpc: {{ endpoint: "127.0.0.1:{grpc}" }}
exporters:
  otlphttp:
    endpoint: "http://exporter-user:hunter2-pass@127.0.0.1:{backend_port}"
    headers: {{ Authorization: "Bearer tok-not-for-logs" }}
    retry_on_failure: {{ enabled: false }}
    sending_queue: {{ enabled: false }}
service:
  telemetry: {{ metrics: {{ address: "" }} }}
  oom_score_adj: null
  pipelines:
    logs: {{ receivers: [otlp], exporters: [otlphttp] }}
"#
    );
    let mut agent = Oomscope::start(&config, &[]);
    agent.wait_ready(addr(grpc), TIMEOUT);
    let mut client = common::faults::logs_client(grpc, TIMEOUT);
    // Refused, since the export fails permanently and the queue is off.
    let _ = client
        .export(common::otlp::logs_request(&bodies("secret-test", 1)))
        .await;
    let output = agent.wait_for_output("HTTP status 400", TIMEOUT);
    assert!(
        output.contains("exporter-user:***@127.0.0.1"),
        "the endpoint is named, masked: {output}"
    );
    for secret in ["hunter2-pass", "tok-not-for-logs"] {
        assert!(!output.contains(secret), "{secret} logged: {output}");
    }

    // print-config masks both too.
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("config.yaml");
    std::fs::write(&path, &config).expect("write");
    let printed = std::process::Command::new(env!("CARGO_BIN_EXE_oomscope"))
        .arg("--config")
        .arg(&path)
        .arg("print-config")
        .output()
        .expect("print-config");
    let printed = String::from_utf8_lossy(&printed.stdout);
    assert!(printed.contains("exporter-user:***@"), "{printed}");
    for secret in ["hunter2-pass", "tok-not-for-logs"] {
        assert!(!printed.contains(secret), "{secret} printed: {printed}");
    }
    let (status, clean) = agent.stop(TIMEOUT);
    assert!(clean && status.success(), "{}", agent.output());
}
