//! Building OTLP requests, sending them to oomscope, and reading back what
//! oomscope's file exporter wrote (one OTLP-JSON request per line).

use std::path::Path;
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::logs::v1::logs_service_client::LogsServiceClient;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::resource::v1::Resource;

pub fn kv_str(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value.to_owned())),
        }),
        ..KeyValue::default()
    }
}

/// One request whose log records have the given bodies.
pub fn logs_request(bodies: &[String]) -> ExportLogsServiceRequest {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: Some(Resource {
                attributes: vec![kv_str("service.name", "interop-test")],
                ..Resource::default()
            }),
            scope_logs: vec![ScopeLogs {
                scope: Some(InstrumentationScope {
                    name: "interop".into(),
                    ..InstrumentationScope::default()
                }),
                log_records: bodies
                    .iter()
                    .map(|b| LogRecord {
                        time_unix_nano: now,
                        severity_number: 13,
                        severity_text: "WARN".into(),
                        body: Some(AnyValue {
                            value: Some(any_value::Value::StringValue(b.clone())),
                        }),
                        ..LogRecord::default()
                    })
                    .collect(),
                ..ScopeLogs::default()
            }],
            ..ResourceLogs::default()
        }],
    }
}

/// Sends `bodies` to an OTLP/gRPC endpoint in requests of `per_request`,
/// retrying a request the server refuses (push-back) until `timeout`.
pub async fn send_logs_grpc(
    endpoint: &str,
    bodies: &[String],
    per_request: usize,
    timeout: Duration,
) {
    let deadline = Instant::now() + timeout;
    let mut client = loop {
        match LogsServiceClient::connect(endpoint.to_owned()).await {
            Ok(c) => break c,
            Err(e) if Instant::now() < deadline => {
                let _ = e;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("connect to {endpoint}: {e}"),
        }
    };
    for chunk in bodies.chunks(per_request.max(1)) {
        let req = logs_request(chunk);
        loop {
            match client.export(req.clone()).await {
                Ok(_) => break,
                Err(s) if Instant::now() < deadline => {
                    let _ = s;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(s) => panic!("export to {endpoint} refused until the timeout: {s}"),
            }
        }
    }
}

/// Everything in an OTLP-JSON-lines file: log bodies (string bodies as
/// text), log resource attributes, and metric data points by name.
#[derive(Debug, Default)]
pub struct FileContents {
    /// Every log record, as OTLP JSON.
    pub logs: Vec<serde_json::Value>,
    pub log_bodies: Vec<String>,
    pub log_resources: Vec<serde_json::Value>,
    /// (metric name, point JSON)
    pub points: Vec<(String, serde_json::Value)>,
    pub lines: usize,
}

impl FileContents {
    pub fn read(path: &Path) -> FileContents {
        let mut out = FileContents::default();
        let Ok(text) = std::fs::read_to_string(path) else {
            return out;
        };
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            // A line being written may be incomplete: stop there.
            let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
                break;
            };
            out.lines += 1;
            for rl in v["resourceLogs"].as_array().into_iter().flatten() {
                for sl in rl["scopeLogs"].as_array().into_iter().flatten() {
                    for lr in sl["logRecords"].as_array().into_iter().flatten() {
                        let body = &lr["body"]["stringValue"];
                        out.log_bodies
                            .push(body.as_str().unwrap_or_default().to_owned());
                        out.log_resources.push(rl["resource"].clone());
                        out.logs.push(lr.clone());
                    }
                }
            }
            for rm in v["resourceMetrics"].as_array().into_iter().flatten() {
                for sm in rm["scopeMetrics"].as_array().into_iter().flatten() {
                    for m in sm["metrics"].as_array().into_iter().flatten() {
                        let name = m["name"].as_str().unwrap_or_default().to_owned();
                        for kind in ["sum", "gauge", "histogram"] {
                            for p in m[kind]["dataPoints"].as_array().into_iter().flatten() {
                                out.points.push((name.clone(), p.clone()));
                            }
                        }
                    }
                }
            }
        }
        out
    }

    /// Polls `path` until `done` holds or `timeout` passes.
    pub fn wait_for(
        path: &Path,
        timeout: Duration,
        done: impl Fn(&FileContents) -> bool,
    ) -> FileContents {
        let deadline = Instant::now() + timeout;
        loop {
            let c = FileContents::read(path);
            if done(&c) || Instant::now() >= deadline {
                return c;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// The integer value of a JSON number point (`asInt` is a string in OTLP JSON).
pub fn point_int(p: &serde_json::Value) -> Option<i64> {
    match &p["asInt"] {
        serde_json::Value::String(s) => s.parse().ok(),
        serde_json::Value::Number(n) => n.as_i64(),
        _ => None,
    }
}

/// The value of attribute `key` in an OTLP-JSON attribute list.
pub fn json_attr<'a>(attrs: &'a serde_json::Value, key: &str) -> Option<&'a serde_json::Value> {
    attrs
        .as_array()?
        .iter()
        .find(|kv| kv["key"] == key)
        .map(|kv| &kv["value"])
}

/// An `intValue` attribute of an OTLP-JSON log record (a string in OTLP
/// JSON); `None` when absent or of another type.
pub fn attr_int(record: &serde_json::Value, key: &str) -> Option<i64> {
    match &json_attr(&record["attributes"], key)?["intValue"] {
        serde_json::Value::String(s) => s.parse().ok(),
        serde_json::Value::Number(n) => n.as_i64(),
        _ => None,
    }
}

/// An attribute of an OTLP-JSON log record as a string: `stringValue`, or
/// `intValue` (a string in OTLP JSON), or `boolValue` rendered.
pub fn attr_str(record: &serde_json::Value, key: &str) -> Option<String> {
    let v = json_attr(&record["attributes"], key)?;
    if let Some(s) = v["stringValue"].as_str() {
        return Some(s.to_owned());
    }
    match &v["intValue"] {
        serde_json::Value::String(s) => return Some(s.clone()),
        serde_json::Value::Number(n) => return Some(n.to_string()),
        _ => {}
    }
    v["boolValue"].as_bool().map(|b| b.to_string())
}

/// An oomscope config with an OTLP receiver (`protocols`, YAML flow style,
/// e.g. `grpc: { endpoint: "127.0.0.1:4317" }`) writing every log and metric
/// to the file exporter at `out`: the backend of the end-to-end tests.
pub fn otlp_to_file_config(protocols: &[String], out: &Path) -> String {
    let protocols: String = protocols.iter().map(|p| format!("      {p}\n")).collect();
    format!(
        r#"
receivers:
  otlp:
    protocols:
{protocols}processors:
  batch: {{ timeout: 100ms }}
exporters:
  file:
    path: "{out}"
    flush_interval: 100ms
service:
  telemetry: {{ metrics: {{ address: "" }} }}
  oom_score_adj: null
  pipelines:
    logs: {{ receivers: [otlp], processors: [batch], exporters: [file] }}
    metrics: {{ receivers: [otlp], processors: [batch], exporters: [file] }}
"#,
        out = out.display()
    )
}
