//! Conformance with the OpenTelemetry Collector's documentation and data
//! model:
//! - every config in `tests/conformance/accept/` (copied from the
//!   collector's and contrib's READMEs, source in its first line) passes
//!   `oomscope validate`; every one in `tests/conformance/refuse/` fails it
//!   with each message its `# expect:` lines give;
//! - oomscope's metrics, sent through a real OTLP peer (rotel), arrive with
//!   the metric names, units and resource attributes oomscope wrote itself
//!   (its file exporter, the same payloads), so nothing on the wire renames
//!   or drops them;
//! - the otlphttp exporter's `zlib` and `deflate` compression reach an
//!   OTLP/HTTP receiver;
//! - a host dashboard's queries (hostmetrics' `system.memory.usage` by
//!   state, the paging metrics by their attributes) work on the `memory`
//!   receiver's data with the registry's values (the container one is in
//!   tests/containers.rs, which needs podman).

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::free_port;
use common::oomscope::Oomscope;
use common::rotel::Rotel;

const TIMEOUT: Duration = Duration::from_secs(60);

fn conformance_dir(kind: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/conformance")
        .join(kind)
}

/// The `.yaml` files of `tests/conformance/<kind>`, sorted.
fn configs(kind: &str) -> Vec<PathBuf> {
    let dir = conformance_dir(kind);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no configs in {}", dir.display());
    files
}

/// `oomscope --config FILE validate` with an empty environment, run in the
/// file's directory (relative paths such as `./foo` stay there).
fn validate(config: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_oomscope"))
        .env_clear()
        .arg("--config")
        .arg(config)
        .arg("validate")
        .current_dir(config.parent().expect("a directory"))
        .output()
        .expect("run the oomscope binary")
}

fn describe(output: &Output) -> String {
    format!(
        "exit status {:?}\nstdout:\n{}\nstderr:\n{}",
        output.status.code(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// The header every copied config must carry.
fn assert_has_source(config: &Path, text: &str) {
    let first = text.lines().next().unwrap_or_default();
    assert!(
        first.starts_with("# source: https://github.com/open-telemetry/"),
        "{}: the first line must name the copied document (`# source: <URL>`), got {first:?}",
        config.display()
    );
}

#[test]
fn collector_readme_configs_load() {
    for config in configs("accept") {
        let text = std::fs::read_to_string(&config).expect("read");
        assert_has_source(&config, &text);
        let output = validate(&config);
        assert!(
            output.status.success(),
            "{} should be valid\n{}",
            config.display(),
            describe(&output)
        );
    }
}

#[test]
fn collector_readme_configs_are_refused_with_their_message() {
    for config in configs("refuse") {
        let text = std::fs::read_to_string(&config).expect("read");
        assert_has_source(&config, &text);
        let expected: Vec<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("# expect: "))
            .collect();
        assert!(
            !expected.is_empty(),
            "{}: a refused config needs `# expect: <message>` lines",
            config.display()
        );
        let output = validate(&config);
        assert_eq!(
            output.status.code(),
            Some(1),
            "{} should be refused\n{}",
            config.display(),
            describe(&output)
        );
        let said = String::from_utf8_lossy(&output.stderr).into_owned()
            + &String::from_utf8_lossy(&output.stdout);
        for message in expected {
            assert!(
                said.contains(message),
                "{}: expected {message:?} in\n{}",
                config.display(),
                describe(&output)
            );
        }
    }
}

/// A resource's string, int and bool attributes as (kind, text), the way
/// rotel's dump renders them (`Str(x)`, `Int(42)`, `Bool(true)`).
type ResourceKey = BTreeMap<String, (String, String)>;
/// A metric's name and unit.
type MetricKey = (String, String);

fn file_resource(resource: &serde_json::Value) -> ResourceKey {
    resource["attributes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|kv| {
            let key = kv["key"].as_str()?.to_string();
            let v = &kv["value"];
            let typed = if let Some(s) = v["stringValue"].as_str() {
                ("Str".to_string(), s.to_string())
            } else if let Some(i) = v["intValue"].as_str() {
                ("Int".to_string(), i.to_string())
            } else if let Some(b) = v["boolValue"].as_bool() {
                ("Bool".to_string(), b.to_string())
            } else {
                return None;
            };
            Some((key, typed))
        })
        .collect()
}

/// [`first_export`] of `out` once there is one; panics with `why()` after
/// [`TIMEOUT`].
fn wait_for_first_export(
    out: &Path,
    why: impl Fn() -> String,
) -> (BTreeSet<MetricKey>, BTreeSet<ResourceKey>) {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        if let Some(first) = first_export(out) {
            return first;
        }
        assert!(Instant::now() < deadline, "{}", why());
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// What the first line of the file exporter holds: each (metric, unit), and
/// each resource.
fn first_export(out: &Path) -> Option<(BTreeSet<MetricKey>, BTreeSet<ResourceKey>)> {
    let text = std::fs::read_to_string(out).ok()?;
    let line = text.lines().next()?;
    let v: serde_json::Value = serde_json::from_str(line).ok()?;
    let mut metrics = BTreeSet::new();
    let mut resources = BTreeSet::new();
    for rm in v["resourceMetrics"].as_array().into_iter().flatten() {
        resources.insert(file_resource(&rm["resource"]));
        for sm in rm["scopeMetrics"].as_array().into_iter().flatten() {
            for m in sm["metrics"].as_array().into_iter().flatten() {
                metrics.insert((
                    m["name"].as_str().unwrap_or_default().to_string(),
                    m["unit"].as_str().unwrap_or_default().to_string(),
                ));
            }
        }
    }
    (!metrics.is_empty()).then_some((metrics, resources))
}

/// The memory receiver's metrics, with a resource processor adding an
/// attribute, go both to a file and through OTLP/gRPC to rotel; at rotel
/// every metric of the first export has the same name and unit, and every
/// resource the same attributes (key, type and value).
#[test]
fn names_units_and_resources_arrive_unchanged_at_a_real_peer() {
    let backend = Rotel::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("out.jsonl");
    let health = free_port();
    let config = format!(
        r#"
receivers:
  memory: {{ collection_interval: 1s }}
processors:
  resource:
    attributes:
      - {{ key: deployment.environment.name, value: conformance, action: upsert }}
      - {{ key: conformance.run, value: 7, action: upsert }}
exporters:
  file: {{ path: "{out}" }}
  otlp:
    endpoint: "http://{backend}"
    sending_queue: {{ sizer: requests, queue_size: 100 }}
extensions:
  health_check: {{ endpoint: "127.0.0.1:{health}" }}
service:
  extensions: [health_check]
  telemetry: {{ metrics: {{ address: "" }} }}
  oom_score_adj: null
  pipelines:
    metrics: {{ receivers: [memory], processors: [resource], exporters: [file, otlp] }}
"#,
        out = out.display(),
        backend = backend.grpc_addr(),
    );
    let mut agent = Oomscope::start(&config, &[]);
    agent.wait_healthy(health, TIMEOUT);

    let (metrics, resources) = wait_for_first_export(&out, || {
        format!(
            "no export in {}; agent output:\n{}",
            out.display(),
            agent.output()
        )
    });
    assert!(
        metrics
            .iter()
            .any(|(name, _)| name == "system.memory.usage"),
        "{metrics:?}"
    );
    assert!(resources
        .iter()
        .all(|r| r.get("deployment.environment.name")
            == Some(&("Str".to_string(), "conformance".to_string()))));

    let received = backend.wait_for(TIMEOUT, |r| {
        let seen_metrics: BTreeSet<MetricKey> = r
            .data_points
            .iter()
            .map(|p| (p.metric.clone(), p.unit.clone()))
            .collect();
        let seen_resources: BTreeSet<ResourceKey> = r
            .data_points
            .iter()
            .map(|p| {
                p.resource
                    .0
                    .iter()
                    .filter(|(_, v)| matches!(v.kind.as_str(), "Str" | "Int" | "Bool"))
                    .map(|(k, v)| (k.clone(), (v.kind.clone(), v.text.clone())))
                    .collect()
            })
            .collect();
        metrics.is_subset(&seen_metrics) && resources.is_subset(&seen_resources)
    });
    // The typed attribute kept its type on the way.
    assert!(received.data_points.iter().any(|p| p
        .resource
        .value("conformance.run")
        .is_some_and(|v| v.kind == "Int" && v.text == "7")));
    agent.stop(TIMEOUT);
}

/// A host memory dashboard's queries on the `memory` receiver's data:
/// `sum by (system.memory.state) (system.memory.usage)` gives the
/// registry's four states, `used` is the limit less
/// `system.memory.linux.available` (the registry's definition) at each
/// scrape, `system.memory.utilization{state=used}` is used / limit, slab is
/// its own metric, and every paging operation has both its fault type and
/// its direction.
#[test]
fn host_memory_dashboard_queries_work() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("out.jsonl");
    let health = free_port();
    let config = format!(
        r#"
receivers:
  memory:
    collection_interval: 1s
    initial_delay: 0s
    pressure: {{ enabled: false }}
    processes: {{ enabled: false }}
    cgroups: {{ enabled: false }}
exporters:
  file: {{ path: "{out}" }}
extensions:
  health_check: {{ endpoint: "127.0.0.1:{health}" }}
service:
  extensions: [health_check]
  telemetry: {{ metrics: {{ level: none }} }}
  oom_score_adj: null
  pipelines:
    metrics: {{ receivers: [memory], exporters: [file] }}
"#,
        out = out.display(),
    );
    let mut agent = Oomscope::start(&config, &[]);
    agent.wait_healthy(health, TIMEOUT);
    let got = common::otlp::FileContents::wait_for(&out, TIMEOUT, |c| {
        c.points.iter().any(|(n, _)| n == "system.memory.usage")
    });
    let value = |p: &serde_json::Value| -> f64 {
        common::otlp::point_int(p)
            .map(|i| i as f64)
            .or_else(|| p["asDouble"].as_f64())
            .expect("a number")
    };
    let attr = |p: &serde_json::Value, key: &str| -> Option<String> {
        common::otlp::json_attr(&p["attributes"], key)
            .and_then(|v| v["stringValue"].as_str())
            .map(str::to_string)
    };
    // Points of `metric` by scrape time, then by the value of `key`.
    let by = |metric: &str, key: &str| -> BTreeMap<String, BTreeMap<String, f64>> {
        let mut out: BTreeMap<String, BTreeMap<String, f64>> = BTreeMap::new();
        for (_, p) in got.points.iter().filter(|(n, _)| n == metric) {
            let time = p["timeUnixNano"].as_str().unwrap_or_default().to_string();
            let group = attr(p, key).unwrap_or_default();
            *out.entry(time).or_default().entry(group).or_default() += value(p);
        }
        out
    };
    let usage = by("system.memory.usage", "system.memory.state");
    let limit = by("system.memory.limit", "");
    let available = by("system.memory.linux.available", "");
    let utilization = by("system.memory.utilization", "system.memory.state");
    assert!(
        !usage.is_empty(),
        "no system.memory.usage: {}",
        agent.output()
    );
    for (time, states) in &usage {
        let keys: Vec<&str> = states.keys().map(String::as_str).collect();
        assert_eq!(keys, ["buffers", "cached", "free", "used"], "at {time}");
        let total = limit[time][""];
        assert_eq!(
            states["used"],
            total - available[time][""],
            "used = limit - available at {time}"
        );
        let fraction = utilization[time]["used"];
        assert!((fraction - states["used"] / total).abs() < 1e-9);
    }
    let slab = by(
        "system.memory.linux.slab.usage",
        "system.memory.linux.slab.state",
    );
    for states in slab.values() {
        let keys: Vec<&str> = states.keys().map(String::as_str).collect();
        assert_eq!(keys, ["reclaimable", "unreclaimable"]);
    }
    assert!(!slab.is_empty(), "no system.memory.linux.slab.usage");
    let paging: Vec<_> = got
        .points
        .iter()
        .filter(|(n, _)| n == "system.paging.operations")
        .collect();
    assert!(!paging.is_empty(), "no system.paging.operations");
    for (_, p) in paging {
        assert!(
            attr(p, "system.paging.fault.type").is_some()
                && attr(p, "system.paging.direction").is_some(),
            "{p}"
        );
    }
    agent.stop(TIMEOUT);
}

/// `compression: zlib`, `deflate`, `snappy`, `x-snappy-framed` and `lz4`
/// of the otlphttp exporter (confighttp's encodings) are read by an
/// OTLP/HTTP receiver that decodes them as confighttp does: another
/// oomscope, which writes what it got to a file. (rotel 0.0.1-alpha10 reads
/// neither zlib nor deflate: it decodes such a body as plain protobuf and
/// answers 400; it answered 400 to a valid snappy block too, and its binary
/// names snappy and lz4 only among its Kafka and ClickHouse exporter options.)
#[test]
fn otlphttp_zlib_deflate_snappy_and_lz4_reach_a_receiver() {
    for compression in ["zlib", "deflate", "snappy", "x-snappy-framed", "lz4"] {
        let dir = tempfile::tempdir().expect("tempdir");
        let out = dir.path().join("received.jsonl");
        let http = free_port();
        let health = free_port();
        let receiver_config = format!(
            r#"
receivers:
  otlp:
    protocols:
      http: {{ endpoint: "127.0.0.1:{http}" }}
exporters:
  file: {{ path: "{out}" }}
extensions:
  health_check: {{ endpoint: "127.0.0.1:{health}" }}
service:
  extensions: [health_check]
  telemetry: {{ metrics: {{ address: "" }} }}
  oom_score_adj: null
  pipelines:
    metrics: {{ receivers: [otlp], exporters: [file] }}
"#,
            out = out.display(),
        );
        let mut receiver = Oomscope::start(&receiver_config, &[]);
        receiver.wait_healthy(health, TIMEOUT);
        let sender_health = free_port();
        let sender_config = format!(
            r#"
receivers:
  memory: {{ collection_interval: 1s }}
exporters:
  otlphttp:
    endpoint: "http://127.0.0.1:{http}"
    compression: {compression}
extensions:
  health_check: {{ endpoint: "127.0.0.1:{sender_health}" }}
service:
  extensions: [health_check]
  telemetry: {{ metrics: {{ address: "" }} }}
  oom_score_adj: null
  pipelines:
    metrics: {{ receivers: [memory], exporters: [otlphttp] }}
"#
        );
        let mut sender = Oomscope::start(&sender_config, &[]);
        sender.wait_healthy(sender_health, TIMEOUT);
        let (metrics, _) = wait_for_first_export(&out, || {
            format!(
                "{compression}: nothing received; sender:\n{}\nreceiver:\n{}",
                sender.output(),
                receiver.output()
            )
        });
        assert!(
            metrics
                .iter()
                .any(|(name, _)| name == "system.memory.usage"),
            "{compression}: {metrics:?}"
        );
        sender.stop(TIMEOUT);
        receiver.stop(TIMEOUT);
    }
}
