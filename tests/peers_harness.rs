//! The test harness itself against the real peers: rotel receives what is
//! sent straight to it (tonic OTLP client, OpenTelemetry Python SDK), the
//! parser reads it back exactly, and rotel restarts on the same ports.

mod common;

use std::{net::TcpStream, time::Duration};

use common::{
    python::run_python_ok,
    rotel::{parse_debug_output, Received, Rotel},
};
use opentelemetry_proto::tonic::{
    collector::{
        logs::v1::{logs_service_client::LogsServiceClient, ExportLogsServiceRequest},
        metrics::v1::{metrics_service_client::MetricsServiceClient, ExportMetricsServiceRequest},
    },
    common::v1::{any_value, AnyValue, InstrumentationScope, KeyValue},
    logs::v1::{LogRecord, ResourceLogs, ScopeLogs},
    metrics::v1::{
        metric, number_data_point, Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics,
    },
    resource::v1::Resource,
};

/// Generous; only there so that a broken peer fails instead of hanging.
const TIMEOUT: Duration = Duration::from_secs(30);

/// rotel 0.0.1a15's output for: the Python SDK's logs (with a multi-line
/// attribute) and metrics (sum, gauge), then logs with typed attributes and
/// Map / multi-line / Int bodies, and a histogram.
const CAPTURED: &str = include_str!("data/rotel-0.0.1a15-debug-detailed.txt");

fn str_value(s: &str) -> AnyValue {
    AnyValue {
        value: Some(any_value::Value::StringValue(s.to_owned())),
    }
}

fn kv(key: &str, value: any_value::Value) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: Some(AnyValue { value: Some(value) }),
        ..KeyValue::default()
    }
}

fn resource() -> Option<Resource> {
    Some(Resource {
        attributes: vec![kv(
            "service.name",
            any_value::Value::StringValue("peers-harness".into()),
        )],
        ..Resource::default()
    })
}

fn logs_request(bodies: &[&str], first_seq: i64) -> ExportLogsServiceRequest {
    let log_records = bodies
        .iter()
        .zip(first_seq..)
        .map(|(body, seq)| LogRecord {
            time_unix_nano: 1_700_000_000_000_000_000 + u64::try_from(seq).expect("seq >= 0"),
            severity_text: "ERROR".into(),
            severity_number: 17,
            body: Some(str_value(body)),
            attributes: vec![
                kv("seq", any_value::Value::IntValue(seq)),
                kv(
                    "oom.victim.comm",
                    any_value::Value::StringValue("python3".into()),
                ),
                kv("killed", any_value::Value::BoolValue(true)),
            ],
            ..LogRecord::default()
        })
        .collect();
    ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: resource(),
            scope_logs: vec![ScopeLogs {
                scope: Some(InstrumentationScope {
                    name: "harness".into(),
                    ..InstrumentationScope::default()
                }),
                log_records,
                ..ScopeLogs::default()
            }],
            ..ResourceLogs::default()
        }],
    }
}

async fn send_logs(rotel: &Rotel, request: ExportLogsServiceRequest) {
    let mut client = LogsServiceClient::connect(rotel.grpc_endpoint())
        .await
        .expect("connect to rotel");
    client
        .export(request)
        .await
        .expect("rotel accepts the logs");
}

/// Waits for `n` records, then checks that no more than `n` arrive.
fn exactly_logs(rotel: &Rotel, n: usize) -> Received {
    rotel.wait_for_logs(n, TIMEOUT);
    std::thread::sleep(Duration::from_millis(200));
    let received = rotel.received();
    assert_eq!(received.logs.len(), n, "{received:#?}");
    received
}

#[test]
fn parser_reads_captured_rotel_output() {
    let received = parse_debug_output(CAPTURED);
    assert_eq!(
        received.log_bodies(),
        vec![
            "hello rotel",
            "second body with = and : chars",
            "k:Str(v), n:Slice(Int(1), Int(2))",
            "line1\nline2 ) tricky\n     -> not: Str(attr)",
            "7",
        ]
    );
    let first = &received.logs[0];
    assert_eq!(first.resource.get("service.name"), Some("capture"));
    assert_eq!(first.scope, "cap");
    assert_eq!(first.severity_text, "INFO");
    assert_eq!(first.severity_number, "SEVERITY_NUMBER_INFO(9)");
    assert_eq!(first.attributes.get("oom.pid"), Some("42"));
    assert_eq!(
        first.attributes.value("oom.pid").map(|v| v.kind.as_str()),
        Some("Int")
    );
    assert_eq!(first.attributes.get("weird"), Some("a\nb \"quoted\""));
    assert_eq!(first.attributes.get("code.line.number"), Some("15"));
    assert_eq!(first.attributes.len(), 5);
    assert!(first.time_unix_nano > 0);

    let typed = &received.logs[2];
    assert_eq!(typed.body.as_ref().map(|b| b.kind.as_str()), Some("Map"));
    assert_eq!(typed.attributes.get("b"), Some("true"));
    assert_eq!(typed.attributes.get("d"), Some("2.5"));
    assert_eq!(typed.attributes.get("arr"), Some("Str(x), Str(y)"));
    assert_eq!(typed.attributes.get("by"), Some("[1, 2]"));
    assert_eq!(typed.attributes.get("empty"), Some(""));
    assert_eq!(
        typed.resource.get("service.name"),
        Some("unknown_service:python")
    );
    // The multi-line body swallowed nothing that follows it.
    assert!(received.logs[3].attributes.is_empty());
    assert_eq!(
        received.logs[4].body.as_ref().map(|b| b.kind.as_str()),
        Some("Int")
    );

    assert_eq!(received.data_points.len(), 4);
    let kills = received.points_of("oom.kills");
    assert_eq!(kills.len(), 2);
    assert_eq!(kills[0].data_type, "Sum");
    assert_eq!(kills[0].value.as_deref(), Some("3"));
    assert_eq!(kills[0].attributes.get("cgroup"), Some("/a"));
    assert_eq!(kills[1].value.as_deref(), Some("1"));
    assert_eq!(kills[1].attributes.get("cgroup"), Some("/b"));
    assert_eq!(kills[0].resource.get("service.name"), Some("capture"));
    let used = received.points_of("mem.used");
    assert_eq!(
        (used[0].data_type.as_str(), used[0].value.as_deref()),
        ("Gauge", Some("1.5"))
    );
    let lat = received.points_of("lat");
    assert_eq!(lat[0].data_type, "Histogram");
    assert_eq!((lat[0].count, lat[0].sum.as_deref()), (Some(1), Some("3")));
    assert_eq!(lat[0].attributes.get("a"), Some("b"));
}

/// rotel writes a record line by line: a read that ends inside the last
/// one (before its `Flags:` line) does not count it yet, whatever line it
/// ends on.
#[test]
fn parser_leaves_a_record_still_being_written_for_the_next_read() {
    let last = CAPTURED.rfind("LogRecord #").expect("a log record");
    let flags = last + CAPTURED[last..].find("Flags:").expect("its Flags line");
    let whole = parse_debug_output(CAPTURED).logs.len();
    for (end, _) in CAPTURED[last..flags].char_indices() {
        let cut = parse_debug_output(&CAPTURED[..last + end]);
        assert_eq!(cut.logs.len(), whole - 1, "cut at {}", last + end);
    }
    let through_flags = &CAPTURED[..flags + CAPTURED[flags..].find('\n').unwrap_or(0)];
    assert_eq!(parse_debug_output(through_flags).logs.len(), whole);
}

#[test]
fn parser_ignores_noise_and_ansi_colours() {
    assert_eq!(parse_debug_output(""), Received::default());
    let coloured =
        "\u{1b}[2m2026-01-01T00:00:00Z\u{1b}[0m \u{1b}[32m INFO\u{1b}[0m Starting Rotel.\n\
                    ResourceLog #0\nResource attributes:\n     -> a: Str(b)\nScopeLogs #0\n\
                    InstrumentationScope s \nLogRecord #0\nBody: Str(x)\nFlags: 0\n";
    let received = parse_debug_output(coloured);
    assert_eq!(received.log_bodies(), vec!["x"]);
    assert_eq!(received.logs[0].resource.get("a"), Some("b"));
    assert_eq!(
        received.logs[0].body.as_ref().map(|b| b.kind.as_str()),
        Some("Str")
    );
}

#[tokio::test]
async fn tonic_logs_reach_rotel_exactly_and_survive_a_restart() {
    let mut rotel = Rotel::start();
    send_logs(
        &rotel,
        logs_request(&["first OOM kill", "second\nspans lines", "third"], 0),
    )
    .await;
    let received = exactly_logs(&rotel, 3);
    assert_eq!(
        received.log_bodies(),
        vec!["first OOM kill", "second\nspans lines", "third"]
    );
    for (seq, log) in received.logs.iter().enumerate() {
        assert_eq!(log.attributes.get("seq"), Some(seq.to_string().as_str()));
        assert_eq!(log.attributes.get("oom.victim.comm"), Some("python3"));
        assert_eq!(log.attributes.get("killed"), Some("true"));
        assert_eq!(log.resource.get("service.name"), Some("peers-harness"));
        assert_eq!(log.scope, "harness");
        assert_eq!(log.severity_text, "ERROR");
        assert_eq!(log.time_unix_nano, 1_700_000_000_000_000_000 + seq as u64);
    }

    let grpc = rotel.grpc_addr();
    let old_pid = rotel.pid();
    rotel.stop();
    assert!(
        TcpStream::connect_timeout(&grpc, Duration::from_secs(1)).is_err(),
        "a stopped rotel must not accept connections"
    );
    rotel.restart();
    assert_eq!(rotel.grpc_addr(), grpc, "same port after restart");
    assert_ne!(rotel.pid(), old_pid);
    send_logs(&rotel, logs_request(&["after restart"], 3)).await;
    let received = exactly_logs(&rotel, 4);
    assert_eq!(received.log_bodies()[3], "after restart");
    assert_eq!(received.logs[3].attributes.get("seq"), Some("3"));
}

#[tokio::test]
async fn tonic_metrics_reach_rotel() {
    let rotel = Rotel::start();
    let point = |value: f64, cgroup: &str| NumberDataPoint {
        attributes: vec![kv("cgroup", any_value::Value::StringValue(cgroup.into()))],
        time_unix_nano: 1_700_000_000_000_000_000,
        value: Some(number_data_point::Value::AsDouble(value)),
        ..NumberDataPoint::default()
    };
    let request = ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: resource(),
            scope_metrics: vec![ScopeMetrics {
                metrics: vec![Metric {
                    name: "oom.memory.usage".into(),
                    unit: "By".into(),
                    data: Some(metric::Data::Gauge(Gauge {
                        data_points: vec![point(52_428_800.0, "/a"), point(1.5, "/b")],
                    })),
                    ..Metric::default()
                }],
                ..ScopeMetrics::default()
            }],
            ..ResourceMetrics::default()
        }],
    };
    let mut client = MetricsServiceClient::connect(rotel.grpc_endpoint())
        .await
        .expect("connect to rotel");
    client
        .export(request)
        .await
        .expect("rotel accepts the metrics");
    let received = rotel.wait_for_data_points(2, TIMEOUT);
    let points = received.points_of("oom.memory.usage");
    assert_eq!(points.len(), 2, "{received:#?}");
    assert_eq!(points[0].data_type, "Gauge");
    assert_eq!(points[0].unit, "By");
    assert_eq!(points[0].value.as_deref(), Some("52428800"));
    assert_eq!(points[0].attributes.get("cgroup"), Some("/a"));
    assert_eq!(points[1].value.as_deref(), Some("1.5"));
    assert_eq!(
        points[1].resource.get("service.name"),
        Some("peers-harness")
    );
}

/// Sends one log record with the OpenTelemetry Python SDK over OTLP/gRPC.
const PYTHON_SENDER: &str = r#"
import sys
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor
from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter
try:
    from opentelemetry.sdk._logs import LogRecord
except ImportError:
    from opentelemetry._logs import LogRecord
provider = LoggerProvider()
provider.add_log_record_processor(
    SimpleLogRecordProcessor(OTLPLogExporter(endpoint=sys.argv[1], insecure=True)))
provider.get_logger("python-sender").emit(
    LogRecord(body=sys.argv[2], attributes={"sender": "python"}))
provider.shutdown()
"#;

#[tokio::test]
async fn python_sdk_sender_reaches_rotel() {
    let rotel = Rotel::start();
    let endpoint = rotel.grpc_addr().to_string();
    run_python_ok(PYTHON_SENDER, &[&endpoint, "from the python sdk"], TIMEOUT).await;
    let received = exactly_logs(&rotel, 1);
    assert_eq!(received.log_bodies(), vec!["from the python sdk"]);
    assert_eq!(received.logs[0].attributes.get("sender"), Some("python"));
    assert_eq!(received.logs[0].scope, "python-sender");
}

#[test]
fn otelcol_contrib_is_installed() {
    let bin = common::otelcol_contrib_bin();
    let output = std::process::Command::new(&bin)
        .arg("--version")
        .output()
        .expect("run otelcol-contrib");
    assert!(
        output.status.success(),
        "{} --version failed",
        bin.display()
    );
}
