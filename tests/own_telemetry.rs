//! The agent's own telemetry configured as today's collector documents it
//! (`service.telemetry.metrics.readers`, `level`, `resource`): the
//! Prometheus endpoint serves the collector's names and labels and a
//! `target_info` with the service resource, a periodic OTLP reader pushes to
//! a real collector (rotel) with the configured resource (and over OTLP/HTTP
//! with protobuf and JSON bodies), `level: none` serves nothing and `basic`
//! has fewer metrics than `detailed`.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use common::free_port;
use common::oomscope::{wait_for_own_metric, Oomscope};
use common::otlp::send_logs_grpc;
use common::rotel::Rotel;

const TIMEOUT: Duration = Duration::from_secs(60);

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// The body of `GET /metrics` on `port`, or `None` when nothing listens.
fn scrape(port: u16) -> Option<String> {
    let mut s = TcpStream::connect(addr(port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    out.split_once("\r\n\r\n").map(|(_, body)| body.to_string())
}

/// Metric family names (`# TYPE` lines) of a scrape.
fn families(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_string)
        .collect()
}

/// The label `name` of the first sample of `metric` in a scrape.
fn label(text: &str, metric: &str, name: &str) -> Option<String> {
    let line = text
        .lines()
        .find(|l| l.starts_with(&format!("{metric}{{")))?;
    let start = line.find(&format!("{name}=\""))? + name.len() + 2;
    let rest = &line[start..];
    Some(rest[..rest.find('"')?].to_string())
}

/// An agent: OTLP/gRPC in, `memory_limiter` and `batch`, a file out, with
/// `telemetry` (YAML at the `telemetry:` key's indentation + 2).
fn start_agent(telemetry: &str, dir: &std::path::Path) -> (Oomscope, u16) {
    let grpc = free_port();
    let config = format!(
        r#"
receivers:
  otlp:
    protocols:
      grpc: {{ endpoint: "127.0.0.1:{grpc}" }}
processors:
  memory_limiter: {{ check_interval: 1s, limit_mib: 4000 }}
  batch: {{ timeout: 50ms }}
exporters:
  file: {{ path: "{out}" }}
service:
  telemetry:
{telemetry}
  oom_score_adj: null
  pipelines:
    logs: {{ receivers: [otlp], processors: [memory_limiter, batch], exporters: [file] }}
"#,
        out = dir.join("out.jsonl").display(),
    );
    let mut agent = Oomscope::start(&config, &[]);
    agent.wait_ready(addr(grpc), TIMEOUT);
    (agent, grpc)
}

async fn send(grpc: u16, n: usize) {
    let bodies: Vec<String> = (0..n).map(|i| format!("own telemetry {i}")).collect();
    send_logs_grpc(&format!("http://127.0.0.1:{grpc}"), &bodies, n, TIMEOUT).await;
}

/// Readers as the collector's documentation writes them (pull: the
/// "Internal telemetry" page, https://opentelemetry.io/docs/collector/internal-telemetry/;
/// periodic: opentelemetry-collector docs/observability.md,
/// https://github.com/open-telemetry/opentelemetry-collector/blob/main/docs/observability.md),
/// with this test's ports.
#[tokio::test(flavor = "multi_thread")]
async fn readers_serve_and_push_the_collectors_names_with_the_service_resource() {
    let backend = Rotel::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let metrics = free_port();
    let telemetry = format!(
        r#"    resource:
      deployment.environment.name: own-telemetry-test
    metrics:
      level: detailed
      readers:
        - pull:
            exporter:
              prometheus:
                host: '127.0.0.1'
                port: {metrics}
        - periodic:
            interval: 500
            exporter:
              otlp:
                protocol: grpc
                endpoint: {endpoint}"#,
        endpoint = backend.grpc_endpoint(),
    );
    let (mut agent, grpc) = start_agent(&telemetry, dir.path());
    send(grpc, 9).await;
    wait_for_own_metric(
        metrics,
        "otelcol_exporter_sent_log_records_total",
        &[("exporter", "file")],
        9.0,
        TIMEOUT,
    );
    let text = scrape(metrics).expect("the pull reader serves /metrics");
    let names = families(&text);
    for name in [
        "otelcol_process_uptime_total",
        "otelcol_process_cpu_seconds_total",
        "otelcol_process_memory_rss",
        "otelcol_process_runtime_heap_alloc_bytes",
        "otelcol_process_runtime_total_alloc_bytes_total",
        "otelcol_process_runtime_total_sys_memory_bytes",
        "otelcol_receiver_accepted_log_records_total",
        "otelcol_processor_incoming_items_total",
        "otelcol_processor_outgoing_items_total",
        "otelcol_exporter_sent_log_records_total",
        "otelcol_exporter_queue_size",
        "otelcol_exporter_queue_capacity",
        "oomscope_processor_memory_limiter_refusing",
        "oomscope_exporter_export_duration",
        "target_info",
    ] {
        assert!(
            names.iter().any(|n| n == name),
            "{name} not served:\n{text}"
        );
    }
    for processor in ["memory_limiter", "batch"] {
        for metric in [
            "otelcol_processor_incoming_items_total",
            "otelcol_processor_outgoing_items_total",
        ] {
            wait_for_own_metric(
                metrics,
                metric,
                &[("processor", processor), ("otel_signal", "logs")],
                9.0,
                TIMEOUT,
            );
        }
    }
    // The Go runtime's MemStats equivalents, from the counting allocator:
    // a live heap, more allocated than live since start, and the
    // allocator's memory from the OS, which is at most the resident set's
    // ceiling of the whole process plus what is committed but not touched.
    let sample = |name: &str| -> f64 {
        text.lines()
            .find(|l| l.starts_with(&format!("{name}{{")) || l.starts_with(&format!("{name} ")))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {name} sample:\n{text}"))
    };
    let live = sample("otelcol_process_runtime_heap_alloc_bytes");
    let total = sample("otelcol_process_runtime_total_alloc_bytes_total");
    let sys = sample("otelcol_process_runtime_total_sys_memory_bytes");
    assert!(live > 0.0 && total > live, "live {live}, total {total}");
    assert!(
        sys >= live,
        "the allocator holds its live heap: sys {sys}, live {live}"
    );
    assert_eq!(
        label(
            &text,
            "otelcol_receiver_accepted_log_records_total",
            "transport"
        )
        .as_deref(),
        Some("grpc"),
        "{text}"
    );
    assert_eq!(
        label(&text, "target_info", "service_name").as_deref(),
        Some("oomscope"),
        "{text}"
    );
    assert_eq!(
        label(&text, "target_info", "deployment_environment_name").as_deref(),
        Some("own-telemetry-test"),
        "{text}"
    );
    let instance = label(&text, "target_info", "service_instance_id").expect("instance id");
    assert_eq!(instance.len(), 36, "a UUID: {instance}");

    // The periodic reader pushes the same metrics with the same resource.
    let got = backend.wait_for(TIMEOUT, |r| {
        r.points_of("otelcol_receiver_accepted_log_records")
            .iter()
            .any(|p| p.value.as_deref() == Some("9"))
    });
    let point = got
        .points_of("otelcol_receiver_accepted_log_records")
        .into_iter()
        .find(|p| p.value.as_deref() == Some("9"))
        .expect("pushed point");
    assert_eq!(point.resource.get("service.name"), Some("oomscope"));
    assert_eq!(
        point.resource.get("service.instance.id"),
        Some(instance.as_str())
    );
    assert_eq!(
        point.resource.get("deployment.environment.name"),
        Some("own-telemetry-test")
    );
    assert_eq!(
        got.points_of("otelcol_process_memory_rss")
            .first()
            .map(|p| p.unit.as_str()),
        Some("By")
    );
    let (status, clean) = agent.stop(TIMEOUT);
    assert!(clean && status.success(), "{}", agent.output());
}

/// `basic` keeps the core counters and drops what `normal` and `detailed`
/// add; `none` serves nothing even with a reader configured.
#[tokio::test(flavor = "multi_thread")]
async fn levels_differ_and_none_serves_nothing() {
    let served = |level: &str, metrics: u16| {
        format!(
            "    metrics:\n      level: {level}\n      readers:\n        - pull:\n            exporter:\n              prometheus:\n                host: '127.0.0.1'\n                port: {metrics}"
        )
    };
    let mut names = Vec::new();
    for level in ["basic", "detailed"] {
        let dir = tempfile::tempdir().expect("tempdir");
        let metrics = free_port();
        let (mut agent, grpc) = start_agent(&served(level, metrics), dir.path());
        send(grpc, 4).await;
        wait_for_own_metric(
            metrics,
            "otelcol_exporter_sent_log_records_total",
            &[("exporter", "file")],
            4.0,
            TIMEOUT,
        );
        names.push(families(&scrape(metrics).expect("served")));
        let (status, clean) = agent.stop(TIMEOUT);
        assert!(clean && status.success(), "{}", agent.output());
    }
    let (basic, detailed) = (&names[0], &names[1]);
    for core in [
        "otelcol_receiver_accepted_log_records_total",
        "otelcol_exporter_sent_log_records_total",
        "otelcol_processor_incoming_items_total",
        "otelcol_process_memory_rss",
    ] {
        assert!(basic.iter().any(|n| n == core), "{core}: {basic:?}");
        assert!(detailed.iter().any(|n| n == core), "{core}: {detailed:?}");
    }
    for extra in [
        "oomscope_exporter_export_duration",
        "oomscope_processor_memory_limiter_refusing",
    ] {
        assert!(!basic.iter().any(|n| n == extra), "{extra}: {basic:?}");
        assert!(detailed.iter().any(|n| n == extra), "{extra}: {detailed:?}");
    }

    // `none`: the agent runs, and its configured endpoint is never opened.
    let dir = tempfile::tempdir().expect("tempdir");
    let metrics = free_port();
    let (mut agent, grpc) = start_agent(&served("none", metrics), dir.path());
    send(grpc, 2).await;
    common::otlp::FileContents::wait_for(&dir.path().join("out.jsonl"), TIMEOUT, |c| {
        c.log_bodies.len() >= 2
    });
    assert_eq!(scrape(metrics), None, "level none serves nothing");
    assert!(
        agent
            .output()
            .contains("internal metrics telemetry disabled"),
        "{}",
        agent.output()
    );
    let (status, clean) = agent.stop(TIMEOUT);
    assert!(clean && status.success(), "{}", agent.output());
}

/// The deprecated `metrics.address` still serves, and says once that it is
/// deprecated.
#[tokio::test(flavor = "multi_thread")]
async fn deprecated_address_still_serves_with_a_warning() {
    let dir = tempfile::tempdir().expect("tempdir");
    let metrics = free_port();
    let (mut agent, grpc) = start_agent(
        &format!("    metrics: {{ address: \"127.0.0.1:{metrics}\" }}"),
        dir.path(),
    );
    send(grpc, 3).await;
    wait_for_own_metric(
        metrics,
        "otelcol_receiver_accepted_log_records_total",
        &[("receiver", "otlp")],
        3.0,
        TIMEOUT,
    );
    let (status, clean) = agent.stop(TIMEOUT);
    assert!(clean && status.success(), "{}", agent.output());
    assert_eq!(
        agent
            .output()
            .matches("metrics::address is deprecated")
            .count(),
        1,
        "{}",
        agent.output()
    );
}

/// The periodic reader over OTLP/HTTP, with protobuf and with JSON bodies
/// (the collector's `protocol: http/protobuf` and `http/json`), into
/// another oomscope's OTLP/HTTP receiver: an endpoint without a path gets
/// `/v1/metrics`, one with a path is used as it is.
#[tokio::test(flavor = "multi_thread")]
async fn periodic_reader_pushes_over_http_protobuf_and_json() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("backend.jsonl");
    let http = free_port();
    let mut backend = Oomscope::start(
        &common::otlp::otlp_to_file_config(
            &[format!("http: {{ endpoint: \"127.0.0.1:{http}\" }}")],
            &out,
        ),
        &[],
    );
    backend.wait_ready(addr(http), TIMEOUT);
    let mut agents = Vec::new();
    for (protocol, endpoint) in [
        ("http/protobuf", format!("http://127.0.0.1:{http}")),
        ("http/json", format!("http://127.0.0.1:{http}/v1/metrics")),
    ] {
        let agent_dir = dir.path().join(protocol.replace('/', "-"));
        std::fs::create_dir_all(&agent_dir).expect("agent dir");
        let telemetry = format!(
            r#"    resource:
      own.protocol: {protocol}
    metrics:
      readers:
        - periodic:
            interval: 200
            exporter:
              otlp:
                protocol: {protocol}
                endpoint: {endpoint}"#
        );
        agents.push(start_agent(&telemetry, &agent_dir).0);
    }
    // Whether the backend holds own metrics whose resource names `protocol`.
    let pushed_over = |protocol: &str| -> bool {
        std::fs::read_to_string(&out)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .flat_map(|v| v["resourceMetrics"].as_array().cloned().unwrap_or_default())
            .any(|rm| {
                let resource = &rm["resource"]["attributes"];
                let names_it = common::otlp::json_attr(resource, "own.protocol")
                    .and_then(|v| v["stringValue"].as_str())
                    == Some(protocol);
                let uptime = rm["scopeMetrics"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .flat_map(|sm| sm["metrics"].as_array().cloned().unwrap_or_default())
                    .any(|m| m["name"] == "otelcol_process_uptime");
                names_it && uptime
            })
    };
    common::otlp::FileContents::wait_for(&out, TIMEOUT, |_| {
        pushed_over("http/protobuf") && pushed_over("http/json")
    });
    for protocol in ["http/protobuf", "http/json"] {
        assert!(
            pushed_over(protocol),
            "no own metrics pushed over {protocol}; backend:\n{}\nagents:\n{}",
            backend.output(),
            agents
                .iter()
                .map(|a| a.output())
                .collect::<Vec<_>>()
                .join("\n---\n")
        );
    }
    for mut agent in agents {
        let (status, clean) = agent.stop(TIMEOUT);
        assert!(clean && status.success(), "{}", agent.output());
    }
    backend.stop(TIMEOUT);
}
