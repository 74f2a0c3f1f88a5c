//! OTLP/gRPC logs load generator for the pass-through benchmark
//! (bench/otlp_passthrough.sh). Sends `--records` log records in requests of
//! `--batch` records over `--concurrency` parallel streams, as fast as the
//! server accepts them, and reports what was accepted.
//!
//! With `--rate R` (bench/kill_storm.sh) it offers a fixed load instead: one
//! request of `--batch` records every `batch / R` seconds, at most
//! `--concurrency` in flight (a tick that finds them all busy is lost, so a
//! slow server shows as a lower achieved rate), until SIGTERM or
//! `--duration` seconds; `--log FILE` gets one line per request:
//! `<unix ns sent> <latency ns> <ok 1|0>`.
//!
//! Usage: otlp_loadgen --endpoint http://127.0.0.1:4317 --records 1000000
//!        otlp_loadgen --endpoint http://127.0.0.1:4317 --rate 50000 --log F

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
    /// Records per second offered (fixed-rate mode); 0: as fast as accepted.
    rate: u64,
    /// Fixed-rate mode: stop after this long (or at SIGTERM).
    duration: Duration,
    log: Option<std::path::PathBuf>,
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        endpoint: "http://127.0.0.1:4317".into(),
        records: 1_000_000,
        batch: 1000,
        concurrency: 8,
        gzip: false,
        rate: 0,
        duration: Duration::from_secs(3600),
        log: None,
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
            "--rate" => a.rate = value()?.parse().map_err(|e| format!("--rate: {e}"))?,
            "--duration" => {
                let secs: f64 = value()?.parse().map_err(|e| format!("--duration: {e}"))?;
                a.duration =
                    Duration::try_from_secs_f64(secs).map_err(|e| format!("--duration: {e}"))?;
            }
            "--log" => a.log = Some(value()?.into()),
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
    if args.rate > 0 {
        fixed_rate(&args, channel).await;
        return;
    }
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

fn unix_nanos() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// `--rate`: a fixed offered load until SIGTERM or `--duration`.
async fn fixed_rate(args: &Args, channel: tonic::transport::Channel) {
    use tokio::sync::{mpsc, Semaphore};
    let period = Duration::from_secs_f64(args.batch as f64 / args.rate as f64);
    let template = Arc::new(request(args.batch));
    let permits = Arc::new(Semaphore::new(args.concurrency));
    // (sent at, latency, accepted): bounded, one per request in flight at most.
    let (tx, mut rx) = mpsc::channel::<(u64, u64, bool)>(args.concurrency.max(1) * 4);
    let log_path = args.log.clone();
    let writer = tokio::task::spawn_blocking(move || {
        use std::io::Write;
        let mut out = log_path
            .and_then(|p| std::fs::File::create(p).ok())
            .map(std::io::BufWriter::new);
        let (mut ok, mut failed) = (0u64, 0u64);
        while let Some((at, latency, accepted)) = rx.blocking_recv() {
            if accepted {
                ok += 1;
            } else {
                failed += 1;
            }
            if let Some(out) = out.as_mut() {
                let _ = writeln!(out, "{at} {latency} {}", u8::from(accepted));
            }
        }
        if let Some(mut out) = out {
            let _ = out.flush();
        }
        (ok, failed)
    });
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("otlp_loadgen: cannot handle SIGTERM: {e}");
            std::process::exit(1);
        }
    };
    let mut ticks = tokio::time::interval(period);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let start = Instant::now();
    let end = tokio::time::Instant::now() + args.duration;
    let (mut offered, mut skipped) = (0u64, 0u64);
    loop {
        tokio::select! {
            _ = term.recv() => break,
            () = tokio::time::sleep_until(end) => break,
            _ = ticks.tick() => {
                offered += 1;
                // All streams busy: this request is not sent (the server is behind).
                let Ok(permit) = Arc::clone(&permits).try_acquire_owned() else {
                    skipped += 1;
                    continue;
                };
                let mut client =
                    LogsServiceClient::new(channel.clone()).max_encoding_message_size(64 << 20);
                if args.gzip {
                    client = client.send_compressed(tonic::codec::CompressionEncoding::Gzip);
                }
                let (template, tx) = (Arc::clone(&template), tx.clone());
                tokio::spawn(async move {
                    let at = unix_nanos();
                    let t = Instant::now();
                    let accepted = client.export((*template).clone()).await.is_ok();
                    let _ = tx.send((at, t.elapsed().as_nanos() as u64, accepted)).await;
                    drop(permit);
                });
            }
        }
    }
    // Wait for the requests in flight.
    let _ = permits.acquire_many(args.concurrency as u32).await;
    let secs = start.elapsed().as_secs_f64();
    drop(tx);
    let (ok, failed) = writer.await.unwrap_or((0, 0));
    let n = ok * args.batch;
    println!(
        "offered_records_per_second={} records_accepted={n} seconds={secs:.3} records_per_second={:.0} requests_offered={offered} requests_skipped={skipped} requests_failed={failed}",
        args.rate,
        n as f64 / secs,
    );
}
