//! oomscope against real OTLP peers (rotel, otelcol-contrib, the OpenTelemetry Python SDK), no mock servers:
//! - the OpenTelemetry Python SDK sends logs and metrics to our receiver over
//!   gRPC and over HTTP;
//! - otelcol-contrib (filelog -> otlphttp) sends to our HTTP receiver;
//! - our `otlp` and `otlphttp` exporters deliver to rotel, read back from it;
//! - outages: rotel stops while data keeps coming and restarts on the same
//!   port; every record arrives. With a persistent queue the agent is also
//!   killed with SIGKILL during the outage and restarted: still everything.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use common::oomscope::Oomscope;
use common::otlp::{json_attr, point_int, send_logs_grpc, FileContents};
use common::python::run_python_ok;
use common::rotel::Rotel;
use common::{free_port, wait_for_port};

/// Only there so a broken peer fails the test instead of hanging it.
const TIMEOUT: Duration = Duration::from_secs(60);
const SDK_SEND: &str = include_str!("peers/sdk_send.py");

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

fn bodies(tag: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{tag} record {i}")).collect()
}

/// oomscope with an OTLP receiver (gRPC and HTTP) writing to a file.
fn receiver_to_file_config(grpc: u16, http: u16, out: &Path) -> String {
    common::otlp::otlp_to_file_config(
        &[
            format!(r#"grpc: {{ endpoint: "127.0.0.1:{grpc}" }}"#),
            format!(r#"http: {{ endpoint: "127.0.0.1:{http}" }}"#),
        ],
        out,
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn python_sdk_sends_logs_and_metrics_over_grpc_and_http() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("out.jsonl");
    let (grpc, http) = (free_port(), free_port());
    let mut agent = Oomscope::start(&receiver_to_file_config(grpc, http, &out), &[]);
    agent.wait_ready(addr(grpc), TIMEOUT);
    agent.wait_ready(addr(http), TIMEOUT);

    const N: usize = 40;
    let grpc_endpoint = format!("127.0.0.1:{grpc}");
    let http_endpoint = format!("http://127.0.0.1:{http}");
    let n = N.to_string();
    run_python_ok(SDK_SEND, &["grpc", &grpc_endpoint, &n, "sdk-grpc"], TIMEOUT).await;
    run_python_ok(SDK_SEND, &["http", &http_endpoint, &n, "sdk-http"], TIMEOUT).await;

    let got = FileContents::wait_for(&out, TIMEOUT, |c| {
        let has_point = |tag: &str| {
            c.points.iter().any(|(name, p)| {
                name == "interop.requests"
                    && json_attr(&p["attributes"], "tag").and_then(|v| v["stringValue"].as_str())
                        == Some(tag)
            })
        };
        c.log_bodies.len() >= 2 * N && has_point("sdk-grpc") && has_point("sdk-http")
    });
    for tag in ["sdk-grpc", "sdk-http"] {
        let mine: Vec<&String> = got
            .log_bodies
            .iter()
            .filter(|b| b.starts_with(&format!("interop {tag} record ")))
            .collect();
        assert_eq!(
            mine.len(),
            N,
            "{tag}: log records written: {:?}",
            got.log_bodies
        );
        for i in 0..N {
            let want = format!("interop {tag} record {i}");
            assert!(mine.iter().any(|b| **b == want), "{tag}: missing {want:?}");
        }
        // The counter was incremented N times with attribute tag=<tag>.
        let sum: Vec<i64> = got
            .points
            .iter()
            .filter(|(name, p)| {
                name == "interop.requests"
                    && json_attr(&p["attributes"], "tag").and_then(|v| v["stringValue"].as_str())
                        == Some(tag)
            })
            .filter_map(|(_, p)| point_int(p))
            .collect();
        // force_flush and shutdown each export the cumulative sum once.
        assert!(
            !sum.is_empty() && sum.iter().all(|v| *v == N as i64),
            "{tag}: counter points {:?}",
            got.points
        );
    }
    // The SDK's resource came through untouched.
    let res = &got.log_resources[0];
    assert_eq!(
        json_attr(&res["attributes"], "service.name").and_then(|v| v["stringValue"].as_str()),
        Some("sdk-interop")
    );
    let (status, clean) = agent.stop(TIMEOUT);
    assert!(
        clean && status.success(),
        "oomscope did not stop cleanly: {status:?}\n{}",
        agent.output()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn otelcol_filelog_sends_to_our_http_receiver() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("out.jsonl");
    let (grpc, http) = (free_port(), free_port());
    let mut agent = Oomscope::start(&receiver_to_file_config(grpc, http, &out), &[]);
    agent.wait_ready(addr(http), TIMEOUT);

    const N: usize = 500;
    let lines: Vec<String> = (0..N)
        .map(|i| format!("otelcol line {i} java.lang.OutOfMemoryError: Java heap space"))
        .collect();
    let endpoint = format!("endpoint: \"http://127.0.0.1:{http}\"");
    let (mut otelcol, otelcol_out) =
        common::start_otelcol_filelog_to_otlphttp(dir.path(), "app", &lines, &[&endpoint]);

    let got = FileContents::wait_for(&out, TIMEOUT, |c| c.log_bodies.len() >= N);
    let _ = otelcol.kill().await;
    let mut received = got.log_bodies.clone();
    received.sort_by_key(|b| b.split(' ').nth(2).and_then(|n| n.parse::<usize>().ok()));
    assert_eq!(
        received,
        lines,
        "otelcol -> oomscope lost or changed lines; otelcol said:\n{}",
        std::fs::read_to_string(&otelcol_out).unwrap_or_default()
    );
    let (status, clean) = agent.stop(TIMEOUT);
    assert!(clean && status.success(), "{}", agent.output());
}

#[tokio::test(flavor = "multi_thread")]
async fn otlp_and_otlphttp_exporters_deliver_to_rotel() {
    let grpc_backend = Rotel::start();
    let http_backend = Rotel::start();
    let grpc = free_port();
    let config = format!(
        r#"
receivers:
  otlp:
    protocols:
      grpc: {{ endpoint: "127.0.0.1:{grpc}" }}
processors:
  batch: {{ timeout: 100ms }}
exporters:
  otlp:
    endpoint: "{grpc_backend}"
    tls: {{ insecure: true }}
  otlphttp:
    endpoint: "{http_backend}"
service:
  telemetry: {{ metrics: {{ address: "" }} }}
  oom_score_adj: null
  pipelines:
    logs: {{ receivers: [otlp], processors: [batch], exporters: [otlp, otlphttp] }}
"#,
        grpc_backend = grpc_backend.grpc_addr(),
        http_backend = http_backend.http_endpoint(),
    );
    let mut agent = Oomscope::start(&config, &[]);
    agent.wait_ready(addr(grpc), TIMEOUT);

    const N: usize = 300;
    let sent = bodies("to-rotel", N);
    send_logs_grpc(&format!("http://127.0.0.1:{grpc}"), &sent, 50, TIMEOUT).await;

    for (name, backend) in [("otlp", &grpc_backend), ("otlphttp", &http_backend)] {
        let got = backend.wait_for_logs(N, TIMEOUT);
        let mut bodies = got.log_bodies();
        bodies.sort();
        let mut want = sent.clone();
        want.sort();
        assert_eq!(
            bodies, want,
            "{name} exporter: rotel received something else"
        );
        let first = &got.logs[0];
        assert_eq!(first.resource.get("service.name"), Some("interop-test"));
        assert_eq!(first.severity_text, "WARN");
    }
    let (status, clean) = agent.stop(TIMEOUT);
    assert!(clean && status.success(), "{}", agent.output());
}

/// oomscope -> rotel with fast retries; `storage` adds a persistent queue.
fn forwarder_config(grpc: u16, backend: SocketAddr, storage_dir: Option<&Path>) -> String {
    let (extension, queue_storage) = match storage_dir {
        Some(d) => (
            format!(
                "extensions:\n  file_storage/queue:\n    directory: \"{}\"\n",
                d.display()
            ),
            "\n      storage: file_storage/queue".to_owned(),
        ),
        None => (String::new(), String::new()),
    };
    let service_extensions = if storage_dir.is_some() {
        "  extensions: [file_storage/queue]\n"
    } else {
        ""
    };
    format!(
        r#"
receivers:
  otlp:
    protocols:
      grpc: {{ endpoint: "127.0.0.1:{grpc}" }}
exporters:
  otlp:
    endpoint: "{backend}"
    tls: {{ insecure: true }}
    retry_on_failure:
      initial_interval: 100ms
      max_interval: 500ms
      max_elapsed_time: 0
    sending_queue:
      queue_size: 1000{queue_storage}
{extension}service:
{service_extensions}  telemetry: {{ metrics: {{ address: "" }} }}
  oom_score_adj: null
  shutdown_timeout: 2s
  pipelines:
    logs: {{ receivers: [otlp], exporters: [otlp] }}
"#
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn backend_outage_loses_nothing() {
    let mut backend = Rotel::start();
    let grpc = free_port();
    let mut agent = Oomscope::start(&forwarder_config(grpc, backend.grpc_addr(), None), &[]);
    agent.wait_ready(addr(grpc), TIMEOUT);
    let endpoint = format!("http://127.0.0.1:{grpc}");

    let before = bodies("before-outage", 100);
    send_logs_grpc(&endpoint, &before, 20, TIMEOUT).await;
    backend.wait_for_logs(100, TIMEOUT);

    backend.stop();
    let during = bodies("during-outage", 200);
    send_logs_grpc(&endpoint, &during, 20, TIMEOUT).await;
    // The agent tries the closed port and fails before the backend returns.
    agent.wait_for_output("Exporting failed", TIMEOUT);
    backend.restart();

    let got = backend.wait_for_logs(300, TIMEOUT);
    let bodies = got.log_bodies();
    for b in before.iter().chain(&during) {
        assert!(
            bodies.contains(b),
            "lost {b:?} across the outage; got {} records",
            bodies.len()
        );
    }
    let (status, clean) = agent.stop(TIMEOUT);
    assert!(clean && status.success(), "{}", agent.output());
}

#[tokio::test(flavor = "multi_thread")]
async fn persistent_queue_survives_sigkill_during_outage() {
    let dir = tempfile::tempdir().expect("tempdir");
    let storage = dir.path().join("storage");
    let mut backend = Rotel::start();
    let grpc = free_port();
    let config = forwarder_config(grpc, backend.grpc_addr(), Some(&storage));
    let mut agent = Oomscope::start(&config, &[]);
    agent.wait_ready(addr(grpc), TIMEOUT);
    let endpoint = format!("http://127.0.0.1:{grpc}");

    backend.stop();
    let during = bodies("queued-on-disk", 300);
    // No batch processor in this pipeline: each accepted request is already
    // on disk when the receiver answers.
    send_logs_grpc(&endpoint, &during, 30, TIMEOUT).await;
    let killed = agent.kill();
    assert!(!killed.success(), "SIGKILL should end the agent");

    backend.restart();
    let mut agent = Oomscope::start(&config, &[]);
    agent.wait_ready(addr(grpc), TIMEOUT);
    let got = backend.wait_for_logs(300, TIMEOUT);
    let bodies = got.log_bodies();
    for b in &during {
        assert!(
            bodies.contains(b),
            "lost {b:?} across kill -9; got {} records\n{}",
            bodies.len(),
            agent.output()
        );
    }
    let (status, clean) = agent.stop(TIMEOUT);
    assert!(clean && status.success(), "{}", agent.output());
    assert!(
        wait_for_port(addr(grpc), Duration::from_millis(200), || Ok(())).is_err(),
        "port still open after stop"
    );
}
