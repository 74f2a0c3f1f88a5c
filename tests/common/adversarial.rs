//! Hostile-client helpers for the OTLP overload and adversarial-input tests:
//! a seeded generator of bad OTLP bodies (mutated protobuf and JSON, values
//! nested thousands deep, lying length prefixes, compression bombs), raw
//! HTTP/1.1 and gRPC framing for lies a well-behaved client library cannot
//! tell, the peak resident memory of a process, and a memory cgroup to run
//! the agent in so that a bug cannot wake the machine's OOM killer.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{
    any_value, AnyValue, ArrayValue, InstrumentationScope, KeyValue, KeyValueList,
};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::metrics::v1::{
    metric, number_data_point, Gauge, Histogram, HistogramDataPoint, Metric, NumberDataPoint,
    ResourceMetrics, ScopeMetrics, Sum,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use prost::Message as _;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::oom::MemoryCgroup;

pub const MIB: u64 = 1024 * 1024;

/// The seed of a test's generator: `OOMSCOPE_TEST_SEED` when set (to replay
/// a failure), else the clock. Printed so that every run can be replayed.
pub fn seeded_rng(test: &str) -> StdRng {
    let seed = std::env::var("OOMSCOPE_TEST_SEED")
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(1)
        });
    // Not captured by the harness, so the seed shows even when the test passes.
    let _ = writeln!(
        std::io::stderr(),
        "{test}: seed {seed} (replay with OOMSCOPE_TEST_SEED={seed})"
    );
    StdRng::seed_from_u64(seed)
}

// ---------------------------------------------------------------------------
// Memory of the agent.

/// Samples a process's resident memory in a thread until stopped; the
/// kernel's own peak (`VmHWM`) is read at the end as well, which catches a
/// spike between two samples.
pub struct RssWatch {
    pid: u32,
    stop: Arc<AtomicBool>,
    max_rss: Arc<AtomicU64>,
    thread: Option<JoinHandle<()>>,
}

/// What [`RssWatch::finish`] saw, in bytes.
#[derive(Debug, Clone, Copy)]
pub struct RssPeak {
    /// Largest `VmRSS` sampled.
    pub max_sampled: u64,
    /// `VmHWM` at the end: the peak resident set of the process's life.
    pub hwm: u64,
}

impl RssPeak {
    /// The larger of the two.
    pub fn peak(&self) -> u64 {
        self.max_sampled.max(self.hwm)
    }
}

impl RssWatch {
    pub fn start(pid: u32) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let max_rss = Arc::new(AtomicU64::new(0));
        let thread = {
            let (stop, max_rss) = (Arc::clone(&stop), Arc::clone(&max_rss));
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    if let Some(rss) = super::proc_status_bytes(pid, "VmRSS") {
                        max_rss.fetch_max(rss, Ordering::Relaxed);
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
            })
        };
        RssWatch {
            pid,
            stop,
            max_rss,
            thread: Some(thread),
        }
    }

    /// The peak so far (the process must still run).
    pub fn now(&self) -> RssPeak {
        RssPeak {
            max_sampled: self.max_rss.load(Ordering::Relaxed),
            hwm: super::proc_status_bytes(self.pid, "VmHWM").unwrap_or(0),
        }
    }

    pub fn finish(mut self) -> RssPeak {
        let peak = self.now();
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        peak
    }
}

impl Drop for RssWatch {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// A memory cgroup of `limit` bytes holding `pid`, as a safety net: a
/// runaway agent is OOM-killed inside it (and the test fails) instead of
/// waking the machine's OOM killer. `None` when this host has no memory
/// controller or we may not use it (not root).
pub fn confine(pid: u32, limit: u64) -> Option<MemoryCgroup> {
    if !super::is_root() {
        return None;
    }
    let cgroup = MemoryCgroup::create(limit).ok()??;
    std::fs::write(cgroup.path().join("cgroup.procs"), pid.to_string()).ok()?;
    Some(cgroup)
}

// ---------------------------------------------------------------------------
// Valid requests (the seeds of the mutations, and the checks after them).

fn kv(key: &str, value: any_value::Value) -> KeyValue {
    KeyValue {
        key: key.to_string(),
        value: Some(AnyValue { value: Some(value) }),
        ..Default::default()
    }
}

fn s(v: &str) -> any_value::Value {
    any_value::Value::StringValue(v.to_string())
}

fn random_text(rng: &mut StdRng, len: usize) -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789 -_:/";
    (0..len)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect()
}

/// A logs request with `bodies` as string bodies and some of every kind of
/// value around them.
pub fn logs_request(bodies: &[String]) -> ExportLogsServiceRequest {
    let records = bodies
        .iter()
        .enumerate()
        .map(|(i, b)| LogRecord {
            time_unix_nano: 1_700_000_000_000_000_000 + i as u64,
            observed_time_unix_nano: 1_700_000_000_000_000_001 + i as u64,
            severity_number: 9,
            severity_text: "INFO".into(),
            body: Some(AnyValue { value: Some(s(b)) }),
            attributes: vec![
                kv("i", any_value::Value::IntValue(i as i64)),
                kv("ok", any_value::Value::BoolValue(i % 2 == 0)),
                kv("ratio", any_value::Value::DoubleValue(i as f64 / 7.0)),
                kv("raw", any_value::Value::BytesValue(vec![1, 2, 3, i as u8])),
                kv(
                    "list",
                    any_value::Value::ArrayValue(ArrayValue {
                        values: vec![AnyValue {
                            value: Some(s("a")),
                        }],
                    }),
                ),
                kv(
                    "map",
                    any_value::Value::KvlistValue(KeyValueList {
                        values: vec![kv("k", s("v"))],
                    }),
                ),
            ],
            trace_id: vec![7; 16],
            span_id: vec![9; 8],
            ..Default::default()
        })
        .collect();
    ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: Some(Resource {
                attributes: vec![kv("service.name", s("adversarial-test"))],
                ..Default::default()
            }),
            scope_logs: vec![ScopeLogs {
                scope: Some(InstrumentationScope {
                    name: "adversarial".into(),
                    version: "1".into(),
                    ..Default::default()
                }),
                log_records: records,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

/// A metrics request with a gauge, a sum and a histogram.
pub fn metrics_request(rng: &mut StdRng) -> ExportMetricsServiceRequest {
    let point = |v: f64| NumberDataPoint {
        attributes: vec![kv("cpu", s("0"))],
        time_unix_nano: 1_700_000_000_000_000_000,
        value: Some(number_data_point::Value::AsDouble(v)),
        ..Default::default()
    };
    let n = rng.random_range(1..4);
    let metrics = vec![
        Metric {
            name: "adv.gauge".into(),
            unit: "By".into(),
            data: Some(metric::Data::Gauge(Gauge {
                data_points: (0..n).map(|i| point(i as f64)).collect(),
            })),
            ..Default::default()
        },
        Metric {
            name: "adv.sum".into(),
            data: Some(metric::Data::Sum(Sum {
                data_points: vec![point(3.0)],
                aggregation_temporality: 2,
                is_monotonic: true,
            })),
            ..Default::default()
        },
        Metric {
            name: "adv.histogram".into(),
            data: Some(metric::Data::Histogram(Histogram {
                data_points: vec![HistogramDataPoint {
                    count: 3,
                    sum: Some(6.0),
                    bucket_counts: vec![1, 1, 1],
                    explicit_bounds: vec![1.0, 2.0],
                    ..Default::default()
                }],
                aggregation_temporality: 2,
            })),
            ..Default::default()
        },
    ];
    ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: Some(Resource {
                attributes: vec![kv("service.name", s("adversarial-test"))],
                ..Default::default()
            }),
            scope_metrics: vec![ScopeMetrics {
                metrics,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

/// A valid logs request of `n` random records, protobuf.
pub fn random_logs_proto(rng: &mut StdRng, n: usize) -> Vec<u8> {
    let bodies: Vec<String> = (0..n)
        .map(|_| {
            let len = rng.random_range(0..200);
            random_text(rng, len)
        })
        .collect();
    logs_request(&bodies).encode_to_vec()
}

/// A valid logs request of `n` random records, OTLP/JSON.
pub fn random_logs_json(rng: &mut StdRng, n: usize) -> Vec<u8> {
    let records: Vec<String> = (0..n)
        .map(|i| {
            let len = rng.random_range(0..80);
            format!(
                r#"{{"timeUnixNano":"{}","severityNumber":9,"severityText":"INFO","body":{{"stringValue":"{}"}},"attributes":[{{"key":"i","value":{{"intValue":"{i}"}}}},{{"key":"d","value":{{"doubleValue":1.5}}}},{{"key":"b","value":{{"boolValue":true}}}},{{"key":"x","value":{{"bytesValue":"AQID"}}}},{{"key":"l","value":{{"arrayValue":{{"values":[{{"stringValue":"a"}}]}}}}}},{{"key":"m","value":{{"kvlistValue":{{"values":[{{"key":"k","value":{{"intValue":7}}}}]}}}}}}],"traceId":"0102030405060708090a0b0c0d0e0f10","spanId":"0102030405060708"}}"#,
                1_700_000_000_000_000_000u64 + i as u64,
                random_text(rng, len)
            )
        })
        .collect();
    format!(
        r#"{{"resourceLogs":[{{"resource":{{"attributes":[{{"key":"service.name","value":{{"stringValue":"adversarial-json"}}}}]}},"scopeLogs":[{{"scope":{{"name":"adv","version":"1"}},"logRecords":[{}]}}]}}]}}"#,
        records.join(",")
    )
    .into_bytes()
}

/// A valid metrics request, OTLP/JSON.
pub fn metrics_json() -> Vec<u8> {
    br#"{"resourceMetrics":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"adversarial-json"}}]},"scopeMetrics":[{"metrics":[{"name":"adv.json.gauge","unit":"1","gauge":{"dataPoints":[{"timeUnixNano":"1700000000000000000","asDouble":1.5,"attributes":[{"key":"k","value":{"stringValue":"v"}}]}]}},{"name":"adv.json.sum","sum":{"aggregationTemporality":2,"isMonotonic":true,"dataPoints":[{"asInt":"42"}]}},{"name":"adv.json.hist","histogram":{"aggregationTemporality":2,"dataPoints":[{"count":"3","sum":6,"bucketCounts":["1","1","1"],"explicitBounds":[1,2]}]}}]}]}]}"#.to_vec()
}

// ---------------------------------------------------------------------------
// Mutations.

/// Byte-level mutations of `input`, 1 to 8 of them, as a fuzzer would do:
/// flips, random bytes, interesting bytes (0x00, 0x7f, 0x80, 0xff),
/// insertions, deletions, duplicated ranges, truncation.
pub fn mutate(rng: &mut StdRng, input: &[u8]) -> Vec<u8> {
    let mut out = input.to_vec();
    let rounds = rng.random_range(1..=8);
    for _ in 0..rounds {
        if out.is_empty() {
            out.push(rng.random());
            continue;
        }
        let at = rng.random_range(0..out.len());
        match rng.random_range(0..8) {
            0 => out[at] ^= 1 << rng.random_range(0..8),
            1 => out[at] = rng.random(),
            2 => out[at] = [0x00, 0x7f, 0x80, 0xff, b'{', b'"', b'['][rng.random_range(0..7)],
            3 => {
                let n = rng.random_range(1..16);
                for _ in 0..n {
                    out.insert(at, rng.random());
                }
            }
            4 => {
                let end = (at + rng.random_range(1..64)).min(out.len());
                out.drain(at..end);
            }
            5 => {
                let end = (at + rng.random_range(1..64)).min(out.len());
                let chunk: Vec<u8> = out[at..end].to_vec();
                let to = rng.random_range(0..=out.len());
                out.splice(to..to, chunk);
            }
            6 => out.truncate(at),
            _ => {
                // A run of 0xff: varints that never end, lengths near 2^64.
                let n = rng.random_range(1..12);
                out.splice(at..at, std::iter::repeat_n(0xff, n));
            }
        }
    }
    out
}

// ---------------------------------------------------------------------------
// Values nested deep.

/// How a nested value nests.
#[derive(Debug, Clone, Copy)]
pub enum Nesting {
    /// AnyValue -> ArrayValue -> AnyValue -> ...
    Array,
    /// AnyValue -> KeyValueList -> KeyValue -> AnyValue -> ...
    Kvlist,
    /// Alternating.
    Mixed,
}

/// An AnyValue nested `depth` levels deep, encoded by hand (prost would
/// recurse `depth` times to encode it, and so overflow the stack at the
/// depths this is meant for). Protobuf has no closing bytes, so the encoding
/// is every level's prefix, outside in, then the leaf; a prefix needs the
/// length of what it holds, so lengths are computed inside out first.
fn nested_any_value_bytes(depth: usize, nesting: Nesting) -> Vec<u8> {
    // Innermost: AnyValue { string_value = "leaf" } (field 1, wire type 2).
    const LEAF: &[u8] = &[0x0a, 4, b'l', b'e', b'a', b'f'];
    let is_kvlist = |level: usize| match nesting {
        Nesting::Array => false,
        Nesting::Kvlist => true,
        Nesting::Mixed => level % 2 == 1,
    };
    // prefixes[level] wraps the value of level + 1 (level depth - 1 wraps the leaf).
    let mut prefixes: Vec<Vec<u8>> = Vec::with_capacity(depth);
    let mut inner_len = LEAF.len();
    for level in (0..depth).rev() {
        let mut prefix = Vec::with_capacity(16);
        if is_kvlist(level) {
            // AnyValue.kvlist_value (6) { KeyValueList.values (1) { KeyValue { key (1) = "k", value (2) = inner } } }
            let kv_len = 3 + 1 + varint_len(inner_len) + inner_len;
            let list_len = 1 + varint_len(kv_len) + kv_len;
            prefix.push(0x32);
            put_len(&mut prefix, list_len);
            prefix.push(0x0a);
            put_len(&mut prefix, kv_len);
            prefix.extend_from_slice(&[0x0a, 1, b'k', 0x12]);
            put_len(&mut prefix, inner_len);
        } else {
            // AnyValue.array_value (5) { ArrayValue.values (1) = inner }
            let list_len = 1 + varint_len(inner_len) + inner_len;
            prefix.push(0x2a);
            put_len(&mut prefix, list_len);
            prefix.push(0x0a);
            put_len(&mut prefix, inner_len);
        }
        inner_len += prefix.len();
        prefixes.push(prefix);
    }
    let mut out = Vec::with_capacity(inner_len);
    for prefix in prefixes.iter().rev() {
        out.extend_from_slice(prefix);
    }
    out.extend_from_slice(LEAF);
    out
}

fn varint_len(mut n: usize) -> usize {
    let mut len = 1;
    while n >= 0x80 {
        n >>= 7;
        len += 1;
    }
    len
}

fn put_len(out: &mut Vec<u8>, mut n: usize) {
    loop {
        let byte = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

fn wrap(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + 6);
    out.push(tag);
    put_len(&mut out, body.len());
    out.extend_from_slice(body);
    out
}

/// A logs request (protobuf) whose one record's body is an AnyValue nested
/// `depth` deep; also as an attribute value when `in_attribute`.
pub fn nested_logs_proto(depth: usize, nesting: Nesting, in_attribute: bool) -> Vec<u8> {
    let value = nested_any_value_bytes(depth, nesting);
    // LogRecord { body (5) } or LogRecord { attributes (6): KeyValue { key, value } }
    let record = if in_attribute {
        let mut key_value = vec![0x0a, 1, b'a', 0x12];
        put_len(&mut key_value, value.len());
        key_value.extend_from_slice(&value);
        wrap(0x32, &key_value)
    } else {
        wrap(0x2a, &value)
    };
    // ScopeLogs { log_records (2) } / ResourceLogs { scope_logs (2) } /
    // ExportLogsServiceRequest { resource_logs (1) }
    let scope_logs = wrap(0x12, &record);
    let resource_logs = wrap(0x12, &scope_logs);
    wrap(0x0a, &resource_logs)
}

/// The same in OTLP/JSON, built as text (serde_json would recurse to build
/// it).
pub fn nested_logs_json(depth: usize, nesting: Nesting) -> Vec<u8> {
    let mut open = String::new();
    let mut closers = Vec::with_capacity(depth);
    for level in 0..depth {
        let kvlist = match nesting {
            Nesting::Array => false,
            Nesting::Kvlist => true,
            Nesting::Mixed => level % 2 == 1,
        };
        if kvlist {
            open.push_str(r#"{"kvlistValue":{"values":[{"key":"k","value":"#);
            closers.push("}]}}");
        } else {
            open.push_str(r#"{"arrayValue":{"values":["#);
            closers.push("]}}");
        }
    }
    let close: String = closers.iter().rev().copied().collect();
    format!(
        r#"{{"resourceLogs":[{{"scopeLogs":[{{"logRecords":[{{"body":{open}{{"stringValue":"leaf"}}{close}}}]}}]}}]}}"#
    )
    .into_bytes()
}

/// JSON whose unknown fields nest `depth` deep: ignored fields are still
/// parsed.
pub fn nested_unknown_json(depth: usize) -> Vec<u8> {
    format!(
        r#"{{"resourceLogs":[],"x":{}1{}}}"#,
        "[".repeat(depth),
        "]".repeat(depth)
    )
    .into_bytes()
}

// ---------------------------------------------------------------------------
// Protobuf that lies about lengths.

/// Requests whose length prefixes, varints, field numbers or wire types are
/// wrong; each is answered by a decode error.
pub fn lying_protobuf() -> Vec<(&'static str, Vec<u8>)> {
    let mut huge_len = vec![0x0a];
    put_len(&mut huge_len, usize::MAX >> 1);
    huge_len.extend_from_slice(b"short");
    let mut len_2g = vec![0x0a];
    put_len(&mut len_2g, 0x7fff_ffff);
    len_2g.extend_from_slice(&[0x12, 0x00]);
    // ResourceLogs whose ScopeLogs claims 1 GiB inside a 20-byte message.
    let mut inner = vec![0x12];
    put_len(&mut inner, 1 << 30);
    inner.extend_from_slice(&[0; 8]);
    let nested_lie = wrap(0x0a, &inner);
    vec![
        ("length near 2^63", huge_len),
        ("length 2^31-1", len_2g),
        ("inner length 1 GiB", nested_lie),
        ("varint of 11 bytes", {
            let mut v = vec![0x08];
            v.extend_from_slice(&[0xff; 10]);
            v.push(0x01);
            v
        }),
        ("unterminated varint", vec![0x08, 0xff, 0xff, 0xff]),
        ("field number 0", vec![0x02, 0x00]),
        ("wire type 6", vec![0x0e, 0x00]),
        ("wire type 7", vec![0x0f, 0x00]),
        ("end group without start", vec![0x0c]),
        ("start group never ended", vec![0x0b, 0x08, 0x01]),
        ("fixed64 cut short", vec![0x09, 1, 2, 3]),
        ("invalid utf-8 in a string field", {
            // ResourceLogs.schema_url (3) = 0xff 0xfe
            let rl = wrap(0x1a, &[0xff, 0xfe]);
            wrap(0x0a, &rl)
        }),
        ("gzip magic as protobuf", vec![0x1f, 0x8b, 0x08, 0x00]),
    ]
}

// ---------------------------------------------------------------------------
// Compression.

pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(data).expect("gzip");
    enc.finish().expect("gzip")
}

/// `n` zero bytes, gzip-compressed (a bomb: about 1000:1).
pub fn gzip_zeros(n: usize) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    let chunk = vec![0u8; 1 << 20];
    let mut left = n;
    while left > 0 {
        let k = left.min(chunk.len());
        enc.write_all(&chunk[..k]).expect("gzip");
        left -= k;
    }
    enc.finish().expect("gzip")
}

/// `n` zero bytes, zstd-compressed (a bomb: far above 1000:1).
pub fn zstd_zeros(n: usize) -> Vec<u8> {
    let mut enc = zstd::stream::write::Encoder::new(Vec::new(), 19).expect("zstd");
    let chunk = vec![0u8; 1 << 20];
    let mut left = n;
    while left > 0 {
        let k = left.min(chunk.len());
        enc.write_all(&chunk[..k]).expect("zstd");
        left -= k;
    }
    enc.finish().expect("zstd")
}

/// A zstd frame header asking for a 2 GiB window (a decoder that honours
/// it allocates that much), followed by a little data.
pub fn zstd_huge_window() -> Vec<u8> {
    // Magic, frame header descriptor 0x00 (no checksum, no size, window
    // descriptor present), window descriptor: exponent 21 -> 2^(10+21) bytes.
    let mut frame = vec![0x28, 0xb5, 0x2f, 0xfd, 0x00, 21 << 3];
    // One raw, last block of 4 bytes.
    frame.extend_from_slice(&[0x21, 0x00, 0x00]);
    frame.extend_from_slice(b"abcd");
    frame
}

// ---------------------------------------------------------------------------
// Raw HTTP/1.1.

/// An answer read off a raw connection.
#[derive(Debug, Clone)]
pub struct RawResponse {
    pub status: u16,
    /// Header lines, lower-cased names.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl RawResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Writes `request` on a new connection (half-closing it after when
/// `half_close`) and reads the answer until the server closes or `timeout`
/// passes. `Err` tells why there was no answer: the connection was reset or
/// closed without a response, or the server said nothing in time.
pub fn raw_http(
    addr: SocketAddr,
    request: &[u8],
    half_close: bool,
    timeout: Duration,
) -> Result<RawResponse, String> {
    let mut s = TcpStream::connect(addr).map_err(|e| format!("connect: {e}"))?;
    s.set_read_timeout(Some(Duration::from_millis(200)))
        .map_err(|e| e.to_string())?;
    // The server may answer (and close) before all of a lying body is
    // written; what matters is the answer.
    let _ = s.write_all(request);
    if half_close {
        let _ = s.shutdown(std::net::Shutdown::Write);
    }
    let deadline = Instant::now() + timeout;
    let mut got = Vec::new();
    let mut buf = [0u8; 16384];
    loop {
        if let Some(r) = parse_response(&got) {
            return Ok(r);
        }
        match s.read(&mut buf) {
            Ok(0) => {
                return parse_response(&got).ok_or_else(|| {
                    format!(
                        "closed without a complete answer after {} bytes: {:?}",
                        got.len(),
                        String::from_utf8_lossy(&got[..got.len().min(200)])
                    )
                })
            }
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                if Instant::now() >= deadline {
                    return Err(format!("no answer within {timeout:?}"));
                }
            }
            Err(e) => {
                return parse_response(&got).ok_or_else(|| format!("read: {e} (no answer)"));
            }
        }
    }
}

/// A complete response in `got` (head, and the body as long as its
/// `Content-Length` says), if there is one.
fn parse_response(got: &[u8]) -> Option<RawResponse> {
    let head_end = got.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&got[..head_end]).ok()?;
    let mut lines = head.split("\r\n");
    let status: u16 = lines.next()?.split(' ').nth(1)?.parse().ok()?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let body = &got[head_end + 4..];
    let len = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .and_then(|(_, v)| v.parse::<usize>().ok())
        .unwrap_or(0);
    if body.len() < len {
        return None;
    }
    Some(RawResponse {
        status,
        headers,
        body: body[..len].to_vec(),
    })
}

/// An HTTP/1.1 POST head with `Connection: close` and extra header lines.
pub fn post_head(path: &str, extra: &[&str]) -> Vec<u8> {
    let mut head = format!("POST {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n");
    for line in extra {
        head.push_str(line);
        head.push_str("\r\n");
    }
    head.push_str("\r\n");
    head.into_bytes()
}

/// `body` in chunked transfer coding, in pieces of at most `piece` bytes.
pub fn chunked(body: &[u8], piece: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + body.len() / piece.max(1) * 8 + 8);
    for c in body.chunks(piece.max(1)) {
        out.extend_from_slice(format!("{:x}\r\n", c.len()).as_bytes());
        out.extend_from_slice(c);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"0\r\n\r\n");
    out
}

// ---------------------------------------------------------------------------
// gRPC framing.

/// A gRPC message frame: compression flag, declared length, payload (the
/// declared length need not match).
pub fn grpc_frame(flag: u8, declared_len: u32, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(5 + payload.len());
    out.push(flag);
    out.extend_from_slice(&declared_len.to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// A well-formed uncompressed frame of `payload`.
pub fn grpc_message(payload: &[u8]) -> Vec<u8> {
    grpc_frame(0, payload.len() as u32, payload)
}

/// A tonic codec that sends and receives messages as raw bytes: requests
/// are encoded once (or mutated) by the test, and tonic frames them.
#[derive(Debug, Clone, Copy, Default)]
pub struct RawCodec;

pub struct RawEncoder;
pub struct RawDecoder;

impl tonic::codec::Codec for RawCodec {
    type Encode = bytes::Bytes;
    type Decode = bytes::Bytes;
    type Encoder = RawEncoder;
    type Decoder = RawDecoder;

    fn encoder(&mut self) -> RawEncoder {
        RawEncoder
    }

    fn decoder(&mut self) -> RawDecoder {
        RawDecoder
    }
}

impl tonic::codec::Encoder for RawEncoder {
    type Item = bytes::Bytes;
    type Error = tonic::Status;

    fn encode(
        &mut self,
        item: bytes::Bytes,
        dst: &mut tonic::codec::EncodeBuf<'_>,
    ) -> Result<(), tonic::Status> {
        bytes::BufMut::put_slice(dst, &item);
        Ok(())
    }
}

impl tonic::codec::Decoder for RawDecoder {
    type Item = bytes::Bytes;
    type Error = tonic::Status;

    fn decode(
        &mut self,
        src: &mut tonic::codec::DecodeBuf<'_>,
    ) -> Result<Option<bytes::Bytes>, tonic::Status> {
        let n = bytes::Buf::remaining(src);
        Ok(Some(bytes::Buf::copy_to_bytes(src, n)))
    }
}

pub const LOGS_EXPORT_PATH: &str = "/opentelemetry.proto.collector.logs.v1.LogsService/Export";
pub const METRICS_EXPORT_PATH: &str =
    "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export";

/// A gRPC client that sends raw message bytes (clones share the connection).
#[derive(Clone)]
pub struct RawGrpc(tonic::client::Grpc<tonic::transport::Channel>);

impl RawGrpc {
    pub async fn connect(endpoint: &str) -> Result<Self, String> {
        let channel = tonic::transport::Endpoint::from_shared(endpoint.to_string())
            .map_err(|e| e.to_string())?
            .connect()
            .await
            .map_err(|e| format!("connect {endpoint}: {e}"))?;
        Ok(RawGrpc(
            tonic::client::Grpc::new(channel).max_decoding_message_size(64 << 20),
        ))
    }

    /// One unary call of `path` with `message` as its (raw) request.
    pub async fn call(
        &mut self,
        path: &'static str,
        message: bytes::Bytes,
    ) -> Result<bytes::Bytes, tonic::Status> {
        self.0
            .ready()
            .await
            .map_err(|e| tonic::Status::unavailable(format!("not ready: {e}")))?;
        self.0
            .unary(
                tonic::Request::new(message),
                http::uri::PathAndQuery::from_static(path),
                RawCodec,
            )
            .await
            .map(tonic::Response::into_inner)
    }
}
