//! OOM latency benchmarks (bench/oom_latency.sh, bench/kill_storm.sh): the
//! time from the kernel's timestamp of an OOM kill to the moment a real
//! backend (rotel) acknowledged the export carrying its record.
//!
//! This program sits between oomscope and rotel as a transparent OTLP/gRPC
//! logs proxy (one connection to rotel for each connection from the agent,
//! as the agent's own connections would be; the one whose first request
//! carries kills, the agent's connection of urgent requests, acknowledges
//! rotel's answers at once, as the agent does on that connection): it
//! forwards every export to rotel as it came (decompressed; only a request
//! that names the kill event is decoded, the rest are counted over their
//! bytes, so that the proxy's own CPU use, on the CPUs the agent and rotel
//! share, stays small) and, when rotel's answer
//! comes back, notes the time against each `linux.oom.kill` record's
//! timestamp (the kernel's `bpf_ktime_get_ns`, converted to wall time by the
//! agent), and counts the other log records rotel acknowledged (the agent's
//! delivered OTLP traffic). It also causes the kills: `--kills N` contained
//! OOM kills in memory cgroups with a 32 MiB limit (never an unbounded
//! allocation: the victim is this program re-executed with `--alloc`, which
//! joins its cgroup, checks it is in it, and allocates at most twice the
//! limit). Needs root.
//!
//! Sequential mode (default): one kill after another, each waiting for its
//! record. Storm mode (`--storm SECS`): after `--baseline SECS` of OTLP
//! traffic alone, the kills come in waves of `--at-once C` simultaneous
//! kills, each of a wave in another of `--cgroups G` cgroups, the waves
//! spread evenly over SECS; every record is then checked by pid (missed,
//! duplicated) against the kills caused and the kernel's own count
//! (`/proc/vmstat` `oom_kill`), and the delivered OTLP rate of the storm is
//! compared with the baseline's. Records of other processes' kills (another
//! job on the host) count as `foreign` where the kernel's count covers them
//! (killed between its two reads), else as `foreign_outside`.
//!
//! The backend's own share, without the agent: in storm mode the proxy also
//! sends rotel a small export of its own every `--probe-ms` (10 ms; 0: off),
//! on a connection that acknowledges at once, as the kill records' does,
//! and reports rotel's answers to these in the baseline, in the storm, and
//! for those sent within 10 ms after a kill's timestamp (when the kills'
//! own records reach rotel). They say how long rotel alone takes to answer
//! while the kills take the CPUs, whatever the agent does.
//!
//! Usage: oom_latency --listen 127.0.0.1:P --rotel http://127.0.0.1:Q --kills 50
//!        oom_latency ... --kills 200 --storm 9 --at-once 4 --cgroups 8
//!                    --baseline 10 --watch-pid AGENT_PID

use std::collections::HashMap;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::{Buf as _, BufMut as _, Bytes};
use http::uri::PathAndQuery;
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value;
use prost::Message as _;
use tokio::sync::Notify;
use tonic::codec::{
    BufferSettings, Codec, CompressionEncoding, DecodeBuf, Decoder, EnabledCompressionEncodings,
    EncodeBuf, Encoder,
};
use tonic::transport::{Channel, Endpoint};
use tonic::{Request, Response, Status};
use tonic_prost::{ProstDecoder, ProstEncoder};

const LIMIT: u64 = 32 << 20;
const CHUNK: usize = 1 << 20;
/// How long a kill's record may take before it counts as missed.
const RECORD_WAIT: Duration = Duration::from_secs(10);

/// What rotel acknowledged.
#[derive(Default)]
struct Seen {
    /// Kill records by victim pid: each one's latency (ns), in arrival order.
    kills: HashMap<i64, Vec<u64>>,
    /// Every kill record, in arrival order.
    log: Vec<KillSeen>,
}

/// One kill record's times, unix ns: the kernel's timestamp, the agent's
/// (its `observed_time_unix_nano`: the record was built), this proxy got
/// the export, rotel acknowledged it.
#[derive(Clone, Copy)]
struct KillSeen {
    pid: i64,
    kernel: u64,
    observed: u64,
    received: u64,
    acked: u64,
}

struct Proxy {
    /// rotel's endpoint.
    rotel: Endpoint,
    /// One connection to rotel per connection from the agent, so that the
    /// agent's connections (bulk traffic, urgent records) reach rotel as
    /// they are instead of sharing one. The connection of urgent records
    /// (its first request carries kills) acknowledges what rotel sends at
    /// once, as the agent's own connection of urgent requests does
    /// (`oomscope::tls::tcp`): the proxy stands in for the network between
    /// the two, it must not add the delayed acknowledgement the agent
    /// avoids.
    upstream: Mutex<HashMap<Option<std::net::SocketAddr>, tonic::client::Grpc<Channel>>>,
    seen: Arc<Mutex<Seen>>,
    /// Log records other than kills that rotel acknowledged.
    others: Arc<AtomicU64>,
    news: Arc<Notify>,
}

fn unix_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

fn lock(seen: &Mutex<Seen>) -> std::sync::MutexGuard<'_, Seen> {
    seen.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Proxy {
    async fn export(
        &self,
        request: Request<Bytes>,
    ) -> Result<Response<ExportLogsServiceResponse>, Status> {
        let received = unix_nanos();
        let peer = request.remote_addr();
        let body = request.into_inner();
        let (others, kills) = read_records(&body)?;
        let mut rotel = {
            let mut upstream = self
                .upstream
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            upstream
                .entry(peer)
                .or_insert_with(|| {
                    let channel = if kills.is_empty() {
                        self.rotel.connect_lazy()
                    } else {
                        self.rotel
                            .connect_with_connector_lazy(oomscope::tls::tcp::connector(true))
                    };
                    tonic::client::Grpc::new(channel).max_decoding_message_size(64 << 20)
                })
                .clone()
        };
        rotel
            .ready()
            .await
            .map_err(|e| Status::unavailable(format!("rotel: {e}")))?;
        let answer = rotel
            .unary(
                Request::new(body),
                PathAndQuery::from_static(LOGS_EXPORT_PATH),
                ForwardCodec,
            )
            .await?;
        // rotel has acknowledged: this is the moment that counts.
        let acked = unix_nanos();
        self.others.fetch_add(others, Ordering::Relaxed);
        if !kills.is_empty() {
            let mut seen = lock(&self.seen);
            for (pid, kernel, observed) in kills {
                seen.log.push(KillSeen {
                    pid,
                    kernel,
                    observed,
                    received,
                    acked,
                });
                seen.kills
                    .entry(pid)
                    .or_default()
                    .push(acked.saturating_sub(kernel));
            }
            drop(seen);
            self.news.notify_waiters();
        }
        Ok(answer)
    }
}

const LOGS_EXPORT_PATH: &str = "/opentelemetry.proto.collector.logs.v1.LogsService/Export";

/// A kill record: the victim's pid, the kernel's and the agent's times.
type Kill = (i64, u64, u64);

/// The log records of an encoded `ExportLogsServiceRequest`: how many are
/// not kills, and the kills. Only a request that names the kill event is
/// decoded; any other (the agent's bulk traffic) is counted over its bytes
/// and forwarded as it came. Decoding and encoding it again would cost this
/// proxy, which shares the CPUs with the agent and rotel, more than the
/// agent spends on it, and the measurement would carry that.
fn read_records(body: &[u8]) -> Result<(u64, Vec<Kill>), Status> {
    if memchr::memmem::find(body, KILL_EVENT.as_bytes()).is_none() {
        if let Some(n) = count_log_records(body) {
            return Ok((n, Vec::new()));
        }
    }
    let request = ExportLogsServiceRequest::decode(body)
        .map_err(|e| Status::invalid_argument(format!("undecodable request: {e}")))?;
    let mut others = 0u64;
    let mut kills = Vec::new();
    for r in request
        .resource_logs
        .iter()
        .flat_map(|rl| &rl.scope_logs)
        .flat_map(|sl| &sl.log_records)
    {
        if r.event_name != KILL_EVENT {
            others += 1;
            continue;
        }
        let pid = r
            .attributes
            .iter()
            .find(|kv| kv.key == "process.pid")
            .and_then(|kv| kv.value.as_ref()?.value.as_ref());
        if let Some(any_value::Value::IntValue(p)) = pid {
            kills.push((*p, r.time_unix_nano, r.observed_time_unix_nano));
        }
    }
    Ok((others, kills))
}

const KILL_EVENT: &str = "linux.oom.kill";

/// Counts the log records of an encoded `ExportLogsServiceRequest`
/// (`resource_logs` 1 -> `scope_logs` 2 -> `log_records` 2) by walking its
/// fields; `None` if the bytes are not well formed.
fn count_log_records(request: &[u8]) -> Option<u64> {
    let mut n = 0u64;
    each_message(request, 1, |resource| {
        each_message(resource, 2, |scope| {
            each_message(scope, 2, |_| {
                n += 1;
                Some(())
            })
        })
    })?;
    Some(n)
}

/// Calls `each` with the bytes of every length-delimited field `field` of
/// the message `buf`, skipping the other fields.
fn each_message<'a>(
    mut buf: &'a [u8],
    field: u64,
    mut each: impl FnMut(&'a [u8]) -> Option<()>,
) -> Option<()> {
    use prost::encoding::decode_varint;
    while !buf.is_empty() {
        let key = decode_varint(&mut buf).ok()?;
        buf = match key & 7 {
            0 => {
                decode_varint(&mut buf).ok()?;
                buf
            }
            1 => buf.get(8..)?,
            5 => buf.get(4..)?,
            2 => {
                let len = usize::try_from(decode_varint(&mut buf).ok()?).ok()?;
                if key >> 3 == field {
                    each(buf.get(..len)?)?;
                }
                buf.get(len..)?
            }
            _ => return None,
        };
    }
    Some(())
}

/// The logs service, served with [`ServerCodec`].
#[derive(Clone)]
struct ProxyServer(Arc<Proxy>);

impl tonic::server::NamedService for ProxyServer {
    const NAME: &'static str = "opentelemetry.proto.collector.logs.v1.LogsService";
}

type BoxFuture<T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'static>>;

impl tower::Service<http::Request<tonic::body::Body>> for ProxyServer {
    type Response = http::Response<tonic::body::Body>;
    type Error = std::convert::Infallible;
    type Future = BoxFuture<Result<Self::Response, Self::Error>>;

    fn poll_ready(
        &mut self,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<tonic::body::Body>) -> Self::Future {
        if request.uri().path() != LOGS_EXPORT_PATH {
            return Box::pin(async { Ok(Status::unimplemented("").into_http()) });
        }
        let mut gzip = EnabledCompressionEncodings::default();
        gzip.enable(CompressionEncoding::Gzip);
        let mut grpc = tonic::server::Grpc::new(ServerCodec)
            .apply_compression_config(gzip, gzip)
            .apply_max_message_size_config(Some(64 << 20), None);
        let method = ExportMethod(Arc::clone(&self.0));
        Box::pin(async move { Ok(grpc.unary(method, request).await) })
    }
}

struct ExportMethod(Arc<Proxy>);

impl tonic::server::UnaryService<Bytes> for ExportMethod {
    type Response = ExportLogsServiceResponse;
    type Future = BoxFuture<Result<Response<ExportLogsServiceResponse>, Status>>;

    fn call(&mut self, request: Request<Bytes>) -> Self::Future {
        let proxy = Arc::clone(&self.0);
        Box::pin(async move { proxy.export(request).await })
    }
}

/// Requests as their (decompressed) bytes; answers encoded by prost.
struct ServerCodec;

impl Codec for ServerCodec {
    type Encode = ExportLogsServiceResponse;
    type Decode = Bytes;
    type Encoder = ProstEncoder<ExportLogsServiceResponse>;
    type Decoder = BytesDecoder;

    fn encoder(&mut self) -> Self::Encoder {
        ProstEncoder::new(BufferSettings::default())
    }

    fn decoder(&mut self) -> Self::Decoder {
        BytesDecoder
    }
}

/// Requests forwarded as their bytes; answers decoded by prost.
struct ForwardCodec;

impl Codec for ForwardCodec {
    type Encode = Bytes;
    type Decode = ExportLogsServiceResponse;
    type Encoder = BytesEncoder;
    type Decoder = ProstDecoder<ExportLogsServiceResponse>;

    fn encoder(&mut self) -> Self::Encoder {
        BytesEncoder
    }

    fn decoder(&mut self) -> Self::Decoder {
        ProstDecoder::new(BufferSettings::default())
    }
}

struct BytesDecoder;

impl Decoder for BytesDecoder {
    type Item = Bytes;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Bytes>, Status> {
        Ok(Some(src.copy_to_bytes(src.remaining())))
    }
}

struct BytesEncoder;

impl Encoder for BytesEncoder {
    type Item = Bytes;
    type Error = Status;

    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put_slice(&item);
        Ok(())
    }
}

/// The proxy's nice value (the agent's OOM path runs at -10 too).
const PROXY_NICE: i32 = -10;

/// The nice value the proxy was started with, for its victims.
static STARTED_NICE: std::sync::OnceLock<i32> = std::sync::OnceLock::new();

/// The calling thread's nice value.
fn thread_nice() -> i32 {
    std::fs::read_to_string("/proc/thread-self/stat")
        .ok()
        .and_then(|stat| {
            // Field 19, counted after the command's closing parenthesis.
            let rest = &stat[stat.rfind(')')? + 2..];
            rest.split(' ').nth(16)?.parse().ok()
        })
        .unwrap_or(0)
}

/// Sets the calling thread's nice value, where allowed.
fn set_thread_nice(nice: i32) {
    // SAFETY: setpriority has no memory preconditions; on Linux, who 0
    // with PRIO_PROCESS is the calling thread.
    let _ = unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, nice) };
}

/// Writes one line per kill record: "pid kernel observed received acked"
/// (unix ns).
fn dump(path: &Path, log: &[KillSeen]) {
    let lines: String = log
        .iter()
        .map(|k| {
            format!(
                "{} {} {} {} {}\n",
                k.pid, k.kernel, k.observed, k.received, k.acked
            )
        })
        .collect();
    if let Err(e) = std::fs::write(path, lines) {
        eprintln!("oom_latency: cannot write {}: {e}", path.display());
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

/// A memory cgroup with a 32 MiB limit, checked to have taken.
fn limited_cgroup(root: &Path, limit_file: &str, name: &str) -> std::io::Result<PathBuf> {
    let dir = root.join(name);
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
    Ok(dir)
}

/// Removes a cgroup once its killed processes are gone.
fn remove_cgroup(dir: &Path) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::fs::remove_dir(dir).is_err() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The victim (`--alloc DIR NICE`): takes the nice value NICE, joins the
/// cgroup DIR, checks that it is in
/// it, then allocates until the kernel kills it, at most twice the limit.
fn alloc(dir: &Path, nice: i32) -> ! {
    // A victim runs at the priority the proxy was started with, not at the
    // one it raised itself to.
    set_thread_nice(nice);
    let name = dir.file_name().map(|n| n.to_string_lossy().into_owned());
    let joined = std::fs::write(dir.join("cgroup.procs"), std::process::id().to_string());
    let inside = std::fs::read_to_string("/proc/self/cgroup")
        .unwrap_or_default()
        .lines()
        .any(|l| {
            let mut f = l.splitn(3, ':');
            let (_, controllers, path) = (f.next(), f.next(), f.next());
            let memory =
                controllers.is_some_and(|c| c.is_empty() || c.split(',').any(|c| c == "memory"));
            memory
                && path
                    .is_some_and(|p| Some(p.rsplit('/').next().unwrap_or("").to_string()) == name)
        });
    if joined.is_err() || !inside {
        eprintln!(
            "oom_latency --alloc: not in {}; refusing to allocate",
            dir.display()
        );
        std::process::exit(3);
    }
    let mut chunks: Vec<Vec<u8>> = Vec::new();
    for i in 0..(2 * LIMIT as usize / CHUNK) {
        chunks.push(vec![(i % 251) as u8 + 1; CHUNK]);
        std::hint::black_box(&chunks);
    }
    eprintln!("oom_latency --alloc: not killed");
    std::process::exit(4);
}

/// One contained kill in `dir`: the victim's pid once the kernel killed it.
fn kill_in(dir: &Path) -> std::io::Result<i32> {
    let exe = std::env::current_exe()?;
    let mut child = std::process::Command::new(exe)
        .arg("--alloc")
        .arg(dir)
        .arg(STARTED_NICE.get().copied().unwrap_or(0).to_string())
        .spawn()?;
    let pid = child.id() as i32;
    let status = child.wait()?;
    if status.signal() != Some(libc::SIGKILL) {
        return Err(std::io::Error::other(format!(
            "victim {pid} was not OOM-killed: {status}"
        )));
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

fn read_vmstat_oom_kill() -> Option<u64> {
    std::fs::read_to_string("/proc/vmstat")
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("oom_kill "))
        .and_then(|v| v.trim().parse().ok())
}

/// A process's CPU time (user + system), in clock ticks.
fn cpu_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = stat.rsplit_once(')')?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
}

struct Args {
    listen: String,
    rotel: String,
    kills: usize,
    storm: Option<Duration>,
    at_once: usize,
    cgroups: usize,
    baseline: Duration,
    watch_pid: Option<u32>,
    dump: Option<PathBuf>,
    /// How often the backend probe sends (storm mode); `None`: not at all.
    probe_every: Option<Duration>,
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        listen: "127.0.0.1:24999".to_string(),
        rotel: String::new(),
        kills: 50,
        storm: None,
        at_once: 1,
        cgroups: 1,
        baseline: Duration::from_secs(10),
        watch_pid: None,
        dump: None,
        probe_every: Some(Duration::from_millis(10)),
    };
    let secs = |v: String, flag: &str| {
        v.parse::<f64>()
            .ok()
            .and_then(|s| Duration::try_from_secs_f64(s).ok())
            .ok_or_else(|| format!("{flag}: seconds expected, not {v}"))
    };
    let num = |v: String, flag: &str| {
        v.parse::<usize>()
            .map_err(|e| format!("{flag}: {e}"))
            .and_then(|n| {
                if n == 0 {
                    Err(format!("{flag} must be positive"))
                } else {
                    Ok(n)
                }
            })
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--listen" => a.listen = value,
            "--rotel" => a.rotel = value,
            "--kills" => a.kills = num(value, "--kills")?,
            "--storm" => a.storm = Some(secs(value, "--storm")?),
            "--at-once" => a.at_once = num(value, "--at-once")?,
            "--cgroups" => a.cgroups = num(value, "--cgroups")?,
            "--baseline" => a.baseline = secs(value, "--baseline")?,
            "--watch-pid" => {
                a.watch_pid = Some(value.parse().map_err(|e| format!("--watch-pid: {e}"))?)
            }
            "--dump" => a.dump = Some(value.into()),
            "--probe-ms" => {
                let ms: u64 = value.parse().map_err(|e| format!("--probe-ms: {e}"))?;
                a.probe_every = (ms > 0).then(|| Duration::from_millis(ms));
            }
            other => return Err(format!("unknown flag {other}")),
        }
    }
    Ok(a)
}

/// Waits until every pid in `pids` has a record, or `deadline`.
async fn wait_for_records(seen: &Mutex<Seen>, news: &Notify, pids: &[i64], deadline: Instant) {
    loop {
        let notified = news.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        if pids.iter().all(|p| lock(seen).kills.contains_key(p)) {
            return;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || tokio::time::timeout(left, notified).await.is_err() {
            return;
        }
    }
}

fn main() {
    let mut argv = std::env::args().skip(1);
    if argv.next().as_deref() == Some("--alloc") {
        match argv.next() {
            Some(dir) => alloc(
                Path::new(&dir),
                argv.next().and_then(|n| n.parse().ok()).unwrap_or(0),
            ),
            None => std::process::exit(2),
        }
    }
    // The proxy stands in for the network between the agent and rotel,
    // which takes no CPU from either: it runs ahead of them (its threads
    // inherit this one's priority) so that its own waits for a CPU, on the
    // CPUs it shares with them, add as little as it can to what it
    // measures. Without the right it stays at the ordinary priority.
    let _ = STARTED_NICE.set(thread_nice());
    set_thread_nice(PROXY_NICE);
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("oom_latency: {e}");
            eprintln!("usage: oom_latency --listen H:P --rotel http://H:P [--kills N] [--storm SECS --at-once C --cgroups G --baseline SECS --watch-pid PID]");
            std::process::exit(2);
        }
    };
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("oom_latency: {e}");
            std::process::exit(1);
        }
    };
    rt.block_on(run(args));
}

async fn run(args: Args) {
    let Some((root, limit_file)) = memory_root() else {
        eprintln!("oom_latency: no memory cgroup controller");
        std::process::exit(1);
    };
    let rotel = match Endpoint::from_shared(args.rotel.clone()) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("oom_latency: bad --rotel {}: {e}", args.rotel);
            std::process::exit(2);
        }
    };
    let seen = Arc::new(Mutex::new(Seen::default()));
    let others = Arc::new(AtomicU64::new(0));
    let news = Arc::new(Notify::new());
    let probe = args
        .storm
        .and(args.probe_every)
        .map(|every| BackendProbe::start(&rotel, every));
    let proxy = Proxy {
        rotel,
        upstream: Mutex::new(HashMap::new()),
        seen: Arc::clone(&seen),
        others: Arc::clone(&others),
        news: Arc::clone(&news),
    };
    let addr = match args.listen.parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("oom_latency: bad --listen {}: {e}", args.listen);
            std::process::exit(2);
        }
    };
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(ProxyServer(Arc::new(proxy)))
            .serve(addr),
    );
    // Signal readiness to the script, then wait for it to start the agent.
    println!("ready");
    let mut line = String::new();
    let _ = std::io::stdin().read_line(&mut line);

    match args.storm {
        None => sequential(&args, &root, limit_file, &seen, &news).await,
        Some(spread) => {
            storm(
                &args,
                spread,
                &root,
                limit_file,
                &seen,
                &others,
                &news,
                probe.as_ref(),
            )
            .await
        }
    }
}

/// Probes rotel directly: one small export every interval (open loop, a
/// few in flight at most), each answer's time noted by when it was sent.
struct BackendProbe {
    /// (sent, unix ns; answered in, ns) per answered probe.
    answers: Arc<Mutex<Vec<(u64, u64)>>>,
    failed: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

/// Probes in flight at most: a stalled rotel is measured, not piled up.
const PROBES_IN_FLIGHT: usize = 4;

impl BackendProbe {
    fn start(rotel: &Endpoint, every: Duration) -> BackendProbe {
        let channel = rotel.connect_with_connector_lazy(oomscope::tls::tcp::connector(true));
        let client = tonic::client::Grpc::new(channel);
        let body = Bytes::from(probe_request().encode_to_vec());
        let answers = Arc::new(Mutex::new(Vec::new()));
        let failed = Arc::new(AtomicU64::new(0));
        let slots = Arc::new(tokio::sync::Semaphore::new(PROBES_IN_FLIGHT));
        let task = tokio::spawn({
            let (answers, failed) = (Arc::clone(&answers), Arc::clone(&failed));
            async move {
                let mut tick = tokio::time::interval(every);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
                loop {
                    tick.tick().await;
                    let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
                        continue;
                    };
                    let (mut client, body) = (client.clone(), body.clone());
                    let (answers, failed) = (Arc::clone(&answers), Arc::clone(&failed));
                    tokio::spawn(async move {
                        let sent = unix_nanos();
                        let started = Instant::now();
                        let answer = match client.ready().await {
                            Ok(()) => client
                                .unary(
                                    Request::new(body),
                                    PathAndQuery::from_static(LOGS_EXPORT_PATH),
                                    ForwardCodec,
                                )
                                .await
                                .map(drop)
                                .map_err(|e| e.to_string()),
                            Err(e) => Err(e.to_string()),
                        };
                        let took = started.elapsed().as_nanos() as u64;
                        match answer {
                            Ok(()) => answers
                                .lock()
                                .unwrap_or_else(std::sync::PoisonError::into_inner)
                                .push((sent, took)),
                            Err(_) => {
                                failed.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                        drop(slot);
                    });
                }
            }
        });
        BackendProbe {
            answers,
            failed,
            task,
        }
    }

    fn answered_within(&self, from: u64, to: u64, kills: Option<&[u64]>) -> Vec<u64> {
        let answers = self
            .answers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        probes_within(&answers, from, to, kills)
    }
}

impl Drop for BackendProbe {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A probe counts as sent after a kill when it was sent at most this long
/// after the kill's kernel timestamp: when the kill's own record reaches
/// rotel (the agent's part is about 5 ms at p50, 12 ms at p99). A window
/// that does not depend on the answer's own length, which would favour
/// slow answers.
const AFTER_KILL_NS: u64 = 10_000_000;

/// Answer times (ns, sorted) of the probes (sent, unix ns; answered in,
/// ns) sent within `[from, to)`; with `kills` (kernel timestamps, sorted),
/// only of those sent within [`AFTER_KILL_NS`] after a kill.
fn probes_within(answers: &[(u64, u64)], from: u64, to: u64, kills: Option<&[u64]>) -> Vec<u64> {
    let after_kill = |sent: u64| {
        kills.is_none_or(|kernel| {
            let lo = kernel.partition_point(|&t| t < sent.saturating_sub(AFTER_KILL_NS));
            let hi = kernel.partition_point(|&t| t <= sent);
            hi > lo
        })
    };
    let mut v: Vec<u64> = answers
        .iter()
        .filter(|(sent, _)| (from..to).contains(sent) && after_kill(*sent))
        .map(|(_, took)| *took)
        .collect();
    v.sort_unstable();
    v
}

/// The probe's export: one log record about the size of a kill's (its
/// attributes and body, about 1.5 KB encoded), not a kill event.
fn probe_request() -> ExportLogsServiceRequest {
    use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue};
    use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
    let text = |s: String| {
        Some(AnyValue {
            value: Some(any_value::Value::StringValue(s)),
        })
    };
    let record = LogRecord {
        time_unix_nano: unix_nanos(),
        severity_number: 17,
        event_name: "oom_latency.probe".into(),
        body: text("x".repeat(200)),
        attributes: (0..40)
            .map(|i| KeyValue {
                key: format!("probe.attribute.{i}"),
                value: text(format!("value {i}")),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    };
    ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            scope_logs: vec![ScopeLogs {
                log_records: vec![record],
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

async fn sequential(args: &Args, root: &Path, limit_file: &str, seen: &Mutex<Seen>, news: &Notify) {
    let mut missing = 0;
    for i in 0..args.kills {
        let name = format!("oomscope-latency-{}-{i}", std::process::id());
        let pid = match tokio::task::spawn_blocking({
            let (root, limit_file) = (root.to_path_buf(), limit_file.to_string());
            move || {
                let dir = limited_cgroup(&root, &limit_file, &name)?;
                let pid = kill_in(&dir);
                remove_cgroup(&dir);
                pid
            }
        })
        .await
        {
            Ok(Ok(p)) => i64::from(p),
            other => {
                eprintln!("oom_latency: kill {i} failed: {other:?}");
                std::process::exit(1);
            }
        };
        wait_for_records(seen, news, &[pid], Instant::now() + RECORD_WAIT).await;
        if !lock(seen).kills.contains_key(&pid) {
            eprintln!("oom_latency: no record for pid {pid} within 10 s");
            missing += 1;
        }
    }
    if let Some(path) = &args.dump {
        dump(path, &lock(seen).log);
    }
    let mut v: Vec<u64> = lock(seen)
        .kills
        .values()
        .filter_map(|l| l.first().copied())
        .collect();
    v.sort_unstable();
    let ms = |ns: u64| ns as f64 / 1e6;
    println!(
        "kills={} records={} missing={missing} p50_ms={:.2} p99_ms={:.2} max_ms={:.2}",
        args.kills,
        v.len(),
        ms(percentile(&v, 50.0)),
        ms(percentile(&v, 99.0)),
        ms(v.last().copied().unwrap_or(0)),
    );
}

/// A point in time of the OTLP traffic: when, records acknowledged so
/// far, the agent's CPU ticks so far.
#[derive(Clone, Copy)]
struct Mark {
    at: Instant,
    unix_ns: u64,
    acked: u64,
    ticks: Option<u64>,
}

impl Mark {
    fn now(others: &AtomicU64, pid: Option<u32>) -> Mark {
        Mark {
            at: Instant::now(),
            unix_ns: unix_nanos(),
            acked: others.load(Ordering::Relaxed),
            ticks: pid.and_then(cpu_ticks),
        }
    }
}

/// Records per second and the agent's CPU (percent of one core) between two marks.
fn between(a: Mark, b: Mark) -> (f64, Option<f64>) {
    let secs = b.at.saturating_duration_since(a.at).as_secs_f64().max(1e-9);
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    let cpu = match (a.ticks, b.ticks) {
        (Some(x), Some(y)) => Some(y.saturating_sub(x) as f64 / hz / secs * 100.0),
        _ => None,
    };
    (b.acked.saturating_sub(a.acked) as f64 / secs, cpu)
}

#[allow(clippy::too_many_arguments)]
async fn storm(
    args: &Args,
    spread: Duration,
    root: &Path,
    limit_file: &str,
    seen: &Mutex<Seen>,
    others: &AtomicU64,
    news: &Notify,
    probe: Option<&BackendProbe>,
) {
    let cgroups: Vec<PathBuf> = match (0..args.cgroups)
        .map(|g| {
            limited_cgroup(
                root,
                limit_file,
                &format!("oomscope-storm-{}-{g}", std::process::id()),
            )
        })
        .collect::<std::io::Result<_>>()
    {
        Ok(c) => c,
        Err(e) => {
            eprintln!("oom_latency: cannot make the cgroups: {e}");
            std::process::exit(1);
        }
    };
    // The OTLP traffic flows: a warm-up, then the baseline.
    let flowing = Instant::now() + Duration::from_secs(30);
    while others.load(Ordering::Relaxed) == 0 && Instant::now() < flowing {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    if others.load(Ordering::Relaxed) == 0 {
        eprintln!("oom_latency: no OTLP traffic came through within 30 s");
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let b0 = Mark::now(others, args.watch_pid);
    tokio::time::sleep(args.baseline).await;
    let b1 = Mark::now(others, args.watch_pid);

    // The storm: waves of `at_once` simultaneous kills, spread over `spread`.
    let vmstat_before = read_vmstat_oom_kill();
    let waves = args.kills.div_ceil(args.at_once);
    let interval = spread / waves.max(1) as u32;
    let s0 = Mark::now(others, args.watch_pid);
    let mut caused: Vec<i64> = Vec::with_capacity(args.kills);
    let mut failed = 0usize;
    let mut k = 0usize;
    for w in 0..waves {
        tokio::time::sleep_until((s0.at + interval * w as u32).into()).await;
        let wave: Vec<_> = (0..args.at_once.min(args.kills - k))
            .map(|j| {
                let dir = cgroups[(k + j) % cgroups.len()].clone();
                tokio::task::spawn_blocking(move || kill_in(&dir))
            })
            .collect();
        k += wave.len();
        for t in wave {
            match t.await {
                Ok(Ok(pid)) => caused.push(i64::from(pid)),
                other => {
                    failed += 1;
                    eprintln!("oom_latency: a kill failed: {other:?}");
                }
            }
        }
    }
    let s1 = Mark::now(others, args.watch_pid);
    let storm_secs = s1.at.saturating_duration_since(s0.at).as_secs_f64();
    wait_for_records(seen, news, &caused, Instant::now() + RECORD_WAIT).await;
    // A record counted twice would come right after the first: a short
    // look for late duplicates (and for records of kills that were late).
    tokio::time::sleep(Duration::from_secs(1)).await;
    let vmstat_after = read_vmstat_oom_kill();
    let counted_until = unix_nanos();
    for dir in &cgroups {
        remove_cgroup(dir);
    }

    let seen = lock(seen);
    if let Some(path) = &args.dump {
        dump(path, &seen.log);
    }
    // Kills of other processes on the host (not ours) count where the
    // kernel's count covers them: killed between the two vmstat reads.
    let counted = |kernel_ns: u64| (s0.unix_ns..counted_until).contains(&kernel_ns);
    let foreign_pids: std::collections::HashSet<i64> = seen
        .log
        .iter()
        .filter(|k| !caused.contains(&k.pid) && counted(k.kernel))
        .map(|k| k.pid)
        .collect();
    let foreign_outside = seen
        .kills
        .keys()
        .filter(|p| !caused.contains(p) && !foreign_pids.contains(p))
        .count();
    let ours = |p: &i64| caused.contains(p) || foreign_pids.contains(p);
    let records: usize = seen
        .kills
        .iter()
        .filter(|(p, _)| ours(p))
        .map(|(_, l)| l.len())
        .sum();
    let duplicates: usize = seen
        .kills
        .iter()
        .filter(|(p, _)| ours(p))
        .map(|(_, l)| l.len().saturating_sub(1))
        .sum();
    let missed: Vec<i64> = caused
        .iter()
        .copied()
        .filter(|p| !seen.kills.contains_key(p))
        .collect();
    let foreign = foreign_pids.len();
    let mut v: Vec<u64> = caused
        .iter()
        .filter_map(|p| seen.kills.get(p)?.first().copied())
        .collect();
    v.sort_unstable();
    // Where the time goes, for the first record of each kill caused: in the
    // agent until its record was built, from there to this proxy, rotel.
    let mut first: HashMap<i64, KillSeen> = HashMap::new();
    for k in seen.log.iter().filter(|k| caused.contains(&k.pid)) {
        first.entry(k.pid).or_insert(*k);
    }
    let stage = |f: fn(&KillSeen) -> u64| {
        let mut d: Vec<u64> = first.values().map(f).collect();
        d.sort_unstable();
        d
    };
    let agent = stage(|k| k.observed.saturating_sub(k.kernel));
    let delivery = stage(|k| k.received.saturating_sub(k.observed));
    let backend = stage(|k| k.acked.saturating_sub(k.received));
    // The agent's part: from the kernel until the record reached the proxy.
    let reached = stage(|k| k.received.saturating_sub(k.kernel));
    let firsts: Vec<KillSeen> = first.values().copied().collect();
    let amid = answers_amid_kills(&firsts);
    let mut kernel_times: Vec<u64> = firsts.iter().map(|k| k.kernel).collect();
    kernel_times.sort_unstable();
    drop(seen);
    if !missed.is_empty() {
        eprintln!("oom_latency: no record for pids {missed:?}");
    }
    let kernel = match (vmstat_before, vmstat_after) {
        (Some(a), Some(b)) => (b.saturating_sub(a)).to_string(),
        _ => "unknown".to_string(),
    };
    let ms = |ns: u64| ns as f64 / 1e6;
    let (base_rate, base_cpu) = between(b0, b1);
    let (storm_rate, storm_cpu) = between(s0, s1);
    let slowdown = (1.0 - storm_rate / base_rate.max(1e-9)) * 100.0;
    let pct = |c: Option<f64>| c.map_or("unknown".to_string(), |c| format!("{c:.1}"));
    if let Some(probe) = probe {
        let base = probe.answered_within(b0.unix_ns, b1.unix_ns, None);
        let during = probe.answered_within(s0.unix_ns, s1.unix_ns, None);
        let after_kills = probe.answered_within(s0.unix_ns, s1.unix_ns, Some(&kernel_times));
        print!(
            "probes_baseline={} probe_p50_ms_baseline={:.2} probe_p99_ms_baseline={:.2} probes_storm={} probe_p50_ms_storm={:.2} probe_p99_ms_storm={:.2} probes_after_kills={} probe_p50_ms_after_kills={:.2} probe_p99_ms_after_kills={:.2} probes_failed={} ",
            base.len(),
            ms(percentile(&base, 50.0)),
            ms(percentile(&base, 99.0)),
            during.len(),
            ms(percentile(&during, 50.0)),
            ms(percentile(&during, 99.0)),
            after_kills.len(),
            ms(percentile(&after_kills, 50.0)),
            ms(percentile(&after_kills, 99.0)),
            probe.failed.load(Ordering::Relaxed),
        );
    }
    println!(
        "kills_caused={} kills_failed={failed} kills_kernel={kernel} kills_reported={records} duplicates={duplicates} missed={} foreign={foreign} foreign_outside={foreign_outside} storm_seconds={storm_secs:.2} p50_ms={:.2} p99_ms={:.2} max_ms={:.2} otlp_rate_baseline={base_rate:.0} otlp_rate_storm={storm_rate:.0} slowdown_pct={slowdown:.1} agent_cpu_pct_baseline={} agent_cpu_pct_storm={} built_p50_ms={:.2} built_p99_ms={:.2} delivery_p50_ms={:.2} delivery_p99_ms={:.2} backend_p50_ms={:.2} backend_p99_ms={:.2} reached_p50_ms={:.2} reached_p99_ms={:.2} backend_slow={} backend_slow_amid_kills_pct={:.0} backend_fast_amid_kills_pct={:.0} phases={},{},{},{}",
        caused.len(),
        missed.len(),
        ms(percentile(&v, 50.0)),
        ms(percentile(&v, 99.0)),
        ms(v.last().copied().unwrap_or(0)),
        pct(base_cpu),
        pct(storm_cpu),
        ms(percentile(&agent, 50.0)),
        ms(percentile(&agent, 99.0)),
        ms(percentile(&delivery, 50.0)),
        ms(percentile(&delivery, 99.0)),
        ms(percentile(&backend, 50.0)),
        ms(percentile(&backend, 99.0)),
        ms(percentile(&reached, 50.0)),
        ms(percentile(&reached, 99.0)),
        amid.slow,
        amid.slow_amid_pct,
        amid.fast_amid_pct,
        b0.unix_ns,
        b1.unix_ns,
        s0.unix_ns,
        s1.unix_ns,
    );
}

/// rotel's answer to a kill's record counts as slow above this.
const SLOW_ANSWER_NS: u64 = 5_000_000;
/// Another kill is "under way" during an answer when its kernel timestamp
/// falls between this long before the proxy got the record and the answer
/// (its reclaim and report come before the timestamp, its console line
/// after).
const KILL_LEAD_NS: u64 = 4_000_000;

/// How rotel's answers relate to the other kills of the storm.
#[derive(Debug, PartialEq)]
struct AnswersAmidKills {
    /// Answers slower than [`SLOW_ANSWER_NS`].
    slow: usize,
    /// Of those, the share (percent) given while another kill was under way.
    slow_amid_pct: f64,
    /// The same share of the faster answers.
    fast_amid_pct: f64,
}

/// On a host as small as the benchmark's, a kill (its reclaim, its report,
/// its console line) takes the CPUs from whatever else runs then, rotel
/// included: this says whether rotel's slow answers came then.
fn answers_amid_kills(kills: &[KillSeen]) -> AnswersAmidKills {
    let mut kernel: Vec<u64> = kills.iter().map(|k| k.kernel).collect();
    kernel.sort_unstable();
    let others_within = |k: &KillSeen| {
        let from = k.received.saturating_sub(KILL_LEAD_NS);
        let lo = kernel.partition_point(|&t| t < from);
        let hi = kernel.partition_point(|&t| t <= k.acked);
        let own = usize::from((from..=k.acked).contains(&k.kernel));
        (hi.saturating_sub(lo)).saturating_sub(own)
    };
    let (mut slow, mut slow_amid, mut fast, mut fast_amid) = (0usize, 0usize, 0usize, 0usize);
    for k in kills {
        let amid = others_within(k) > 0;
        if k.acked.saturating_sub(k.received) > SLOW_ANSWER_NS {
            slow += 1;
            slow_amid += usize::from(amid);
        } else {
            fast += 1;
            fast_amid += usize::from(amid);
        }
    }
    let pct = |part: usize, of: usize| {
        if of == 0 {
            0.0
        } else {
            100.0 * part as f64 / of as f64
        }
    };
    AnswersAmidKills {
        slow,
        slow_amid_pct: pct(slow_amid, slow),
        fast_amid_pct: pct(fast_amid, fast),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue};
    use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};

    /// A slow answer with another kill's timestamp inside its window
    /// counts as amid kills; one whose only kill in the window is its own,
    /// or whose neighbour came before the lead, does not.
    #[test]
    fn slow_answers_are_matched_with_the_kills_under_way() {
        const MS: u64 = 1_000_000;
        let kill = |pid, kernel, received, acked| KillSeen {
            pid,
            kernel,
            observed: kernel,
            received,
            acked,
        };
        let kills = [
            // Slow (8 ms), and kill 2 is stamped 2 ms before its receipt.
            kill(1, 100 * MS, 104 * MS, 112 * MS),
            kill(2, 102 * MS, 106 * MS, 107 * MS),
            // Slow (10 ms), alone: kill 2 came 5 ms before its receipt.
            kill(3, 103 * MS, 107 * MS, 117 * MS),
            // Fast, alone.
            kill(4, 500 * MS, 504 * MS, 505 * MS),
        ];
        let got = answers_amid_kills(&kills);
        assert_eq!(got.slow, 2);
        assert_eq!(got.slow_amid_pct, 50.0);
        // Kill 2's window (102-107 ms) holds kill 3 (103): amid. Kill 4's
        // holds none.
        assert_eq!(got.fast_amid_pct, 50.0);
    }

    /// Probes are taken by when they were sent: within the window, and
    /// after a kill only when sent within 10 ms of its timestamp, however
    /// long their answer took.
    #[test]
    fn probes_are_chosen_by_when_they_were_sent() {
        const MS: u64 = 1_000_000;
        let answers = [
            (10 * MS, 3 * MS),
            (20 * MS, 2 * MS),
            (30 * MS, MS),
            (40 * MS, 30 * MS),
        ];
        assert_eq!(
            probes_within(&answers, 20 * MS, 40 * MS, None),
            [MS, 2 * MS]
        );
        let kills = [MS, 19 * MS, 45 * MS];
        assert_eq!(
            probes_within(&answers, 0, 50 * MS, Some(&kills)),
            [2 * MS, 3 * MS],
            "10 ms: 9 ms after the first kill; 20 ms: 1 ms after the second; \
             30 ms: 11 ms after; 40 ms: before the next kill, though answered after it"
        );
    }

    fn record(i: usize, event: &str) -> LogRecord {
        LogRecord {
            time_unix_nano: i as u64,
            observed_time_unix_nano: 2 * i as u64,
            severity_number: 9,
            event_name: event.into(),
            body: Some(AnyValue {
                value: Some(any_value::Value::StringValue(format!("line {i}"))),
            }),
            attributes: vec![KeyValue {
                key: "process.pid".into(),
                value: Some(AnyValue {
                    value: Some(any_value::Value::IntValue(i as i64)),
                }),
                ..Default::default()
            }],
            trace_id: vec![7; 16],
            flags: 1,
            ..Default::default()
        }
    }

    /// The walk counts what prost decodes, over requests of every shape.
    #[test]
    fn records_are_counted_as_decoded() {
        for resources in 0..3 {
            for scopes in 0..3 {
                for records in [0, 1, 7] {
                    let request = ExportLogsServiceRequest {
                        resource_logs: (0..resources)
                            .map(|_| ResourceLogs {
                                scope_logs: (0..scopes)
                                    .map(|_| ScopeLogs {
                                        log_records: (0..records).map(|i| record(i, "")).collect(),
                                        schema_url: "s".into(),
                                        ..Default::default()
                                    })
                                    .collect(),
                                schema_url: "r".into(),
                                ..Default::default()
                            })
                            .collect(),
                    };
                    let bytes = request.encode_to_vec();
                    let expected = (resources * scopes * records) as u64;
                    assert_eq!(count_log_records(&bytes), Some(expected));
                    assert_eq!(read_records(&bytes).expect("reads"), (expected, Vec::new()));
                }
            }
        }
        assert_eq!(count_log_records(&[0x0a, 0x05, 0x00]), None, "truncated");
    }

    /// Unknown fields of every wire type, at every level the walk goes
    /// through, are skipped as prost skips them; a group (wire type 3) is
    /// not taken for well formed, and the request is decoded instead.
    #[test]
    fn unknown_fields_are_skipped() {
        // Field 15 varint, 14 fixed64, 13 fixed32, 12 bytes.
        let unknown: &[u8] = &[
            0x78, 0x96, 0x01, 0x71, 1, 2, 3, 4, 5, 6, 7, 8, 0x6d, 1, 2, 3, 4, 0x62, 2, b'x', b'y',
        ];
        let framed = |field: u8, body: &[u8]| {
            let mut out = vec![field << 3 | 2];
            prost::encoding::encode_varint(body.len() as u64, &mut out);
            out.extend_from_slice(body);
            out
        };
        let scope = |records: usize| {
            let mut bytes = unknown.to_vec();
            bytes.extend(
                ScopeLogs {
                    log_records: (0..records).map(|i| record(i, "")).collect(),
                    ..Default::default()
                }
                .encode_to_vec(),
            );
            bytes.extend_from_slice(unknown);
            bytes
        };
        let mut resource = unknown.to_vec();
        resource.extend(framed(2, &scope(3)));
        resource.extend_from_slice(unknown);
        resource.extend(framed(2, &scope(4)));
        let mut request = unknown.to_vec();
        request.extend(framed(1, &resource));
        request.extend_from_slice(unknown);
        request.extend(framed(1, &resource));
        let decoded = ExportLogsServiceRequest::decode(request.as_slice()).expect("prost reads it");
        let records: usize = decoded
            .resource_logs
            .iter()
            .flat_map(|r| &r.scope_logs)
            .map(|s| s.log_records.len())
            .sum();
        assert_eq!(records, 14);
        assert_eq!(count_log_records(&request), Some(14));
        // A start-group key (field 9, wire type 3).
        assert_eq!(count_log_records(&[0x4b, 0x4c]), None);
    }

    /// A request with kills is decoded: each kill with its times, the rest
    /// counted.
    #[test]
    fn kills_are_read_from_a_request_that_names_them() {
        let request = ExportLogsServiceRequest {
            resource_logs: vec![ResourceLogs {
                scope_logs: vec![ScopeLogs {
                    log_records: vec![record(3, KILL_EVENT), record(4, ""), record(5, KILL_EVENT)],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        };
        let (others, kills) = read_records(&request.encode_to_vec()).expect("reads");
        assert_eq!(others, 1);
        assert_eq!(kills, [(3, 3, 6), (5, 5, 10)]);
    }
}
