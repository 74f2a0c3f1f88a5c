//! OTLP/gRPC logs load generator for the pass-through benchmark
//! (bench/otlp_passthrough.sh). Sends `--records` log records in requests of
//! `--batch` records over `--concurrency` parallel streams, as fast as the
//! server accepts them, and reports what was accepted.
//!
//! Usage: otlp_loadgen --endpoint http://127.0.0.1:4317 --records 1000000

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::logs::v1::logs_service_client::LogsServiceClient;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::resource::v1::Resource;

struct Args {
    endpoint: String,
    records: u64,
    batch: u64,
    concurrency: usize,
    gzip: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        endpoint: "http://127.0.0.1:4317".into(),
        records: 1_000_000,
        batch: 1000,
        concurrency: 8,
        gzip: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--endpoint" => a.endpoint = value()?,
            "--records" => a.records = value()?.parse().map_err(|e| format!("--records: {e}"))?,
            "--batch" => a.batch = value()?.parse().map_err(|e| format!("--batch: {e}"))?,
            "--concurrency" => {
                a.concurrency = value()?
                    .parse()
                    .map_err(|e| format!("--concurrency: {e}"))?
            }
            "--gzip" => a.gzip = true,
            other => return Err(format!("unknown flag {other}")),
        }
    }
    if a.batch == 0 || a.concurrency == 0 {
        return Err("--batch and --concurrency must be positive".into());
    }
    Ok(a)
}

fn kv(k: &str, v: any_value::Value) -> KeyValue {
    KeyValue {
        key: k.into(),
        value: Some(AnyValue { value: Some(v) }),
        ..Default::default()
    }
}

fn request(records: u64) -> ExportLogsServiceRequest {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    let log_records = (0..records)
        .map(|i| LogRecord {
            time_unix_nano: now + i,
            observed_time_unix_nano: now + i,
            severity_number: 9,
            severity_text: "INFO".into(),
            body: Some(AnyValue {
                value: Some(any_value::Value::StringValue(format!(
                    "GET /api/v1/orders/{i} 200 12ms user=42 region=eu-west-1 upstream=orders-7f9c"
                ))),
            }),
            attributes: vec![
                kv("http.method", any_value::Value::StringValue("GET".into())),
                kv("http.status_code", any_value::Value::IntValue(200)),
                kv(
                    "log.file.name",
                    any_value::Value::StringValue("access.log".into()),
                ),
            ],
            ..Default::default()
        })
        .collect();
    ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: Some(Resource {
                attributes: vec![
                    kv(
                        "service.name",
                        any_value::Value::StringValue("loadgen".into()),
                    ),
                    kv(
                        "host.name",
                        any_value::Value::StringValue("bench-host".into()),
                    ),
                ],
                ..Default::default()
            }),
            scope_logs: vec![ScopeLogs {
                scope: Some(InstrumentationScope {
                    name: "otlp_loadgen".into(),
                    ..Default::default()
                }),
                log_records,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

#[tokio::main]
async fn main() {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("otlp_loadgen: {e}");
            std::process::exit(2);
        }
    };
    let channel = match tonic::transport::Endpoint::from_shared(args.endpoint.clone()) {
        Ok(e) => e.connect_timeout(Duration::from_secs(5)),
        Err(e) => {
            eprintln!("otlp_loadgen: bad endpoint: {e}");
            std::process::exit(2);
        }
    };
    let channel = match channel.connect().await {
        Ok(c) => c,
        Err(e) => {
            eprintln!("otlp_loadgen: cannot connect to {}: {e}", args.endpoint);
            std::process::exit(1);
        }
    };
    let template = Arc::new(request(args.batch));
    let requests = args.records.div_ceil(args.batch);
    let next = Arc::new(AtomicU64::new(0));
    let accepted = Arc::new(AtomicU64::new(0));
    let retried = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..args.concurrency {
        let mut client =
            LogsServiceClient::new(channel.clone()).max_encoding_message_size(64 << 20);
        if args.gzip {
            client = client.send_compressed(tonic::codec::CompressionEncoding::Gzip);
        }
        let (template, next, accepted, retried) = (
            Arc::clone(&template),
            Arc::clone(&next),
            Arc::clone(&accepted),
            Arc::clone(&retried),
        );
        let batch = args.batch;
        tasks.push(tokio::spawn(async move {
            while next.fetch_add(1, Ordering::Relaxed) < requests {
                loop {
                    match client.export((*template).clone()).await {
                        Ok(_) => {
                            accepted.fetch_add(batch, Ordering::Relaxed);
                            break;
                        }
                        Err(status) => {
                            // Push-back from the server: retry the same request.
                            retried.fetch_add(1, Ordering::Relaxed);
                            if retried.load(Ordering::Relaxed) % 1000 == 1 {
                                eprintln!("otlp_loadgen: retrying after: {}", status.message());
                            }
                            tokio::time::sleep(Duration::from_millis(5)).await;
                        }
                    }
                }
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    let secs = start.elapsed().as_secs_f64();
    let n = accepted.load(Ordering::Relaxed);
    println!(
        "records_accepted={n} seconds={secs:.3} records_per_second={:.0} retried_requests={}",
        n as f64 / secs,
        retried.load(Ordering::Relaxed)
    );
}
