//! OOM latency benchmark (bench/oom_latency.sh): the time from the kernel's
//! timestamp of an OOM kill to the moment a real backend (rotel)
//! acknowledged the export carrying its record.
//!
//! This program sits between oomscope and rotel as a transparent OTLP/gRPC
//! logs proxy: it forwards every export to rotel and, when rotel's answer
//! comes back, notes the time against each `linux.oom.kill` record's
//! timestamp (the kernel's `bpf_ktime_get_ns`, converted to wall time by the
//! agent). It also causes the kills: `--kills N` contained OOM kills, one
//! after another, each in its own memory cgroup with a 32 MiB limit (never an
//! unbounded allocation). Needs root.
//!
//! Usage: oom_latency --listen 127.0.0.1:P --rotel http://127.0.0.1:Q --kills 50

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use opentelemetry_proto::tonic::collector::logs::v1::logs_service_client::LogsServiceClient;
use opentelemetry_proto::tonic::collector::logs::v1::logs_service_server::{
    LogsService, LogsServiceServer,
};
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value;
use tokio::sync::mpsc;
use tonic::transport::Channel;
use tonic::{Request, Response, Status};

const LIMIT: u64 = 32 << 20;
const ALLOCATOR: &str =
    "a = []\nfor _ in range(40):\n    a.append(b'x' * (4 << 20))\nraise SystemExit('not killed')\n";

struct Proxy {
    rotel: LogsServiceClient<Channel>,
    seen: mpsc::UnboundedSender<(i64, u64)>,
}

fn unix_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

#[tonic::async_trait]
impl LogsService for Proxy {
    async fn export(
        &self,
        request: Request<ExportLogsServiceRequest>,
    ) -> Result<Response<ExportLogsServiceResponse>, Status> {
        let req = request.into_inner();
        let kills: Vec<(i64, u64)> = req
            .resource_logs
            .iter()
            .flat_map(|rl| &rl.scope_logs)
            .flat_map(|sl| &sl.log_records)
            .filter(|r| r.event_name == "linux.oom.kill")
            .filter_map(|r| {
                let pid = r.attributes.iter().find(|kv| kv.key == "process.pid")?;
                match pid.value.as_ref()?.value.as_ref()? {
                    any_value::Value::IntValue(p) => Some((*p, r.time_unix_nano)),
                    _ => None,
                }
            })
            .collect();
        let answer = self.rotel.clone().export(req).await?;
        // rotel has acknowledged: this is the moment that counts.
        let acked = unix_nanos();
        for (pid, kernel_time) in kills {
            let _ = self.seen.send((pid, acked.saturating_sub(kernel_time)));
        }
        Ok(answer)
    }
}

fn memory_root() -> Option<(PathBuf, &'static str)> {
    for root in ["/sys/fs/cgroup", "/sys/fs/cgroup/unified"] {
        let c =
            std::fs::read_to_string(Path::new(root).join("cgroup.controllers")).unwrap_or_default();
        if c.split_whitespace().any(|x| x == "memory") {
            return Some((PathBuf::from(root), "memory.max"));
        }
    }
    let v1 = Path::new("/sys/fs/cgroup/memory");
    v1.join("memory.limit_in_bytes")
        .is_file()
        .then(|| (v1.to_path_buf(), "memory.limit_in_bytes"))
}

/// One contained kill; returns the victim's pid.
fn contained_kill(root: &Path, limit_file: &str, i: usize) -> std::io::Result<i32> {
    let dir = root.join(format!("oomscope-latency-{}-{i}", std::process::id()));
    std::fs::create_dir(&dir)?;
    std::fs::write(dir.join(limit_file), LIMIT.to_string())?;
    let read_back: u64 = std::fs::read_to_string(dir.join(limit_file))?
        .trim()
        .parse()
        .unwrap_or(u64::MAX);
    if read_back > LIMIT {
        let _ = std::fs::remove_dir(&dir);
        return Err(std::io::Error::other(
            "the cgroup limit did not take; refusing to allocate",
        ));
    }
    let mut child = std::process::Command::new("sh")
        .arg("-c")
        .arg(r#"set -e; echo $$ > "$1"; exec python3 -c "$2""#)
        .arg("sh")
        .arg(dir.join("cgroup.procs"))
        .arg(ALLOCATOR)
        .spawn()?;
    let pid = child.id() as i32;
    child.wait()?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::fs::remove_dir(&dir).is_err() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(pid)
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

#[tokio::main]
async fn main() {
    let mut listen = "127.0.0.1:24999".to_string();
    let mut rotel = String::new();
    let mut kills = 50usize;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match (a.as_str(), args.next()) {
            ("--listen", Some(v)) => listen = v,
            ("--rotel", Some(v)) => rotel = v,
            ("--kills", Some(v)) => kills = v.parse().unwrap_or(50),
            _ => {
                eprintln!("usage: oom_latency --listen H:P --rotel http://H:P [--kills N]");
                std::process::exit(2);
            }
        }
    }
    let Some((root, limit_file)) = memory_root() else {
        eprintln!("oom_latency: no memory cgroup controller");
        std::process::exit(1);
    };
    let channel = match Channel::from_shared(rotel.clone()) {
        Ok(c) => c.connect_lazy(),
        Err(e) => {
            eprintln!("oom_latency: bad --rotel {rotel}: {e}");
            std::process::exit(2);
        }
    };
    let (tx, mut rx) = mpsc::unbounded_channel();
    let proxy = Proxy {
        rotel: LogsServiceClient::new(channel),
        seen: tx,
    };
    let addr = match listen.parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("oom_latency: bad --listen {listen}: {e}");
            std::process::exit(2);
        }
    };
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(
                LogsServiceServer::new(proxy)
                    .accept_compressed(tonic::codec::CompressionEncoding::Gzip)
                    .send_compressed(tonic::codec::CompressionEncoding::Gzip),
            )
            .serve(addr),
    );
    // Signal readiness to the script, then wait for it to start the agent.
    println!("ready");
    let mut line = String::new();
    let _ = std::io::stdin().read_line(&mut line);

    let mut latencies: HashMap<i64, u64> = HashMap::new();
    let mut missing = 0;
    for i in 0..kills {
        let pid = match tokio::task::spawn_blocking({
            let root = root.clone();
            move || contained_kill(&root, limit_file, i)
        })
        .await
        {
            Ok(Ok(p)) => i64::from(p),
            other => {
                eprintln!("oom_latency: kill {i} failed: {other:?}");
                std::process::exit(1);
            }
        };
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while !latencies.contains_key(&pid) {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some((p, l))) => {
                    latencies.insert(p, l);
                }
                _ => {
                    eprintln!("oom_latency: no record for pid {pid} within 10 s");
                    missing += 1;
                    break;
                }
            }
        }
    }
    let mut v: Vec<u64> = latencies.values().copied().collect();
    v.sort_unstable();
    let ms = |ns: u64| ns as f64 / 1e6;
    println!(
        "kills={kills} records={} missing={missing} p50_ms={:.2} p99_ms={:.2} max_ms={:.2}",
        v.len(),
        ms(percentile(&v, 50.0)),
        ms(percentile(&v, 99.0)),
        ms(v.last().copied().unwrap_or(0)),
    );
}
