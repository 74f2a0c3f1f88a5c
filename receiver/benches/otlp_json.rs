//! OTLP/JSON encoding of one memory scrape's worth of metrics (200 points
//! with three attributes each, under a resource with ten): oomscope's
//! writer (`otlp_json::encode`, what the `file` exporter and otlphttp's
//! `json` encoding run) against the anchor, opentelemetry-proto's own
//! serde support written with `serde_json::to_vec` (which also writes
//! every default field and NaN as `null`, so does less than OTLP/JSON asks).
//!
//! `cargo bench -p oomscope --bench otlp_json`; compare the two `thrpt` lines.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use oomscope::exporters::otlp_json;
use oomscope::pipeline::Payload;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::metrics::v1::{
    metric::Data, number_data_point, Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics,
    Sum,
};
use opentelemetry_proto::tonic::resource::v1::Resource;

const POINTS: usize = 200;

fn attribute(key: &str, value: String) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value)),
        }),
        ..Default::default()
    }
}

/// Shaped like the memory receiver's scrape: gauges and sums of processes
/// and cgroups, one point each per process or cgroup.
fn scrape() -> Vec<ResourceMetrics> {
    let metrics = (0..POINTS / 10)
        .map(|m| {
            let points = (0..10)
                .map(|p| NumberDataPoint {
                    attributes: vec![
                        attribute("process.pid", format!("{}", 1000 + p)),
                        attribute("process.executable.name", format!("worker-{p}")),
                        attribute(
                            "oomscope.cgroup.path",
                            format!("/system.slice/app-{p}.service"),
                        ),
                    ],
                    start_time_unix_nano: 1_764_000_000_000_000_000,
                    time_unix_nano: 1_764_000_010_000_000_000 + p,
                    value: Some(if m % 2 == 0 {
                        number_data_point::Value::AsInt(123_456_789 * (p as i64 + 1))
                    } else {
                        number_data_point::Value::AsDouble(0.125 * (p as f64 + 1.0))
                    }),
                    ..Default::default()
                })
                .collect();
            Metric {
                name: format!("process.memory.metric_{m}"),
                description: "Bytes of memory the process holds.".into(),
                unit: "By".into(),
                data: Some(if m % 2 == 0 {
                    Data::Sum(Sum {
                        data_points: points,
                        aggregation_temporality: 2,
                        is_monotonic: false,
                    })
                } else {
                    Data::Gauge(Gauge {
                        data_points: points,
                    })
                }),
                ..Default::default()
            }
        })
        .collect();
    vec![ResourceMetrics {
        resource: Some(Resource {
            attributes: (0..10)
                .map(|i| attribute(&format!("host.attribute_{i}"), format!("value-{i}")))
                .collect(),
            ..Default::default()
        }),
        scope_metrics: vec![ScopeMetrics {
            scope: Some(InstrumentationScope {
                name: "oomscope/memory".into(),
                version: "0.1.0".into(),
                ..Default::default()
            }),
            metrics,
            ..Default::default()
        }],
        ..Default::default()
    }]
}

fn bench(c: &mut Criterion) {
    let resource_metrics = scrape();
    let payload = Payload::Metrics(resource_metrics.clone());
    let request = ExportMetricsServiceRequest { resource_metrics };
    let mut group = c.benchmark_group("otlp_json_scrape");
    group.throughput(Throughput::Elements(POINTS as u64));
    group.bench_function("oomscope_otlp_json", |b| {
        b.iter(|| otlp_json::encode(black_box(&payload)))
    });
    group.bench_function("anchor_opentelemetry_proto_serde", |b| {
        b.iter(|| serde_json::to_vec(black_box(&request)).expect("serde"))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
