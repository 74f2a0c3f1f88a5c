//! Thousands of adversarial OTLP/HTTP bodies and OTLP/gRPC messages against
//! the real agent (otlp receiver -> memory_limiter, resource, batch -> otlp
//! exporter to rotel, file and debug exporters), generated from a printed
//! seed: byte-level mutations of valid protobuf and JSON requests, values
//! nested thousands deep, length prefixes that lie, lying `Content-Encoding`
//! (and compression bombs), lying `Content-Length`, chunked bodies, bad
//! content types, and the gRPC equivalents over HTTP/2 (mutated messages,
//! wrong compression flags, declared lengths that lie, nested values).
//!
//! Each bad request must be answered with a clear status of the right class
//! (4xx; a non-OK gRPC status that tells a client error), or accepted when
//! it happens to be valid; never a hang or a reset without an answer. After
//! each batch of bad input a valid request (HTTP and gRPC) must be accepted
//! and its records reach rotel. At the end the agent has never panicked, is
//! healthy, and its peak resident memory (`VmHWM`) stayed well under
//! 150 MiB.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt as _;
use prost::Message as _;
use rand::rngs::StdRng;
use rand::Rng;
use tokio::sync::Mutex;

use common::adversarial::{
    chunked, confine, gzip, gzip_zeros, logs_request, lying_protobuf, metrics_json,
    metrics_request, mutate, nested_logs_json, nested_logs_proto, nested_unknown_json, post_head,
    random_logs_json, random_logs_proto, raw_http, seeded_rng, zstd_huge_window, zstd_zeros,
    Nesting, RawGrpc, RawResponse, RssWatch, LOGS_EXPORT_PATH, METRICS_EXPORT_PATH, MIB,
};
use common::oomscope::Oomscope;
use common::rotel::Rotel;
use common::{free_port, skip};

const TEST: &str = "otlp_adversarial";
/// Only there so that a broken agent fails the test instead of hanging it;
/// every answer is expected long before.
const TIMEOUT: Duration = Duration::from_secs(60);
/// The issue's bound on the agent's peak resident memory.
const RSS_BOUND: u64 = 150 * MIB;
/// The safety net around the agent.
const CGROUP_LIMIT: u64 = 2048 * MIB;
/// The receiver's HTTP body limit (the default, 20 MiB).
const BODY_LIMIT: usize = 20 << 20;
/// Requests in flight at once in the batches of bodies; batches of protocol
/// lies go one at a time, so that each has one right answer (with others in
/// flight, any request may find the in-flight budget taken).
const CONCURRENCY: usize = 8;

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// What a request may be answered with.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Expect {
    /// Valid after all: 200 / OK.
    Accepted,
    /// A clear client error: HTTP 4xx; for gRPC a status that says the
    /// request was wrong (see [`grpc_client_error`]).
    Rejected,
    /// Mutated input: either, as long as it is one of them.
    AcceptedOrRejected,
    /// Rejected, or refused for now (503 with `Retry-After`) while other
    /// requests hold the receiver's in-flight budget.
    RejectedOrBusy,
}

/// What came back.
#[derive(Debug, Clone)]
enum Outcome {
    Http(u16),
    /// 503 with `Retry-After`.
    HttpBusy,
    Grpc(tonic::Code),
    /// No answer: reset, closed, or nothing in time.
    NoAnswer(String),
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Outcome::Http(status) => write!(f, "HTTP {status}"),
            Outcome::HttpBusy => write!(f, "HTTP 503 with Retry-After"),
            Outcome::Grpc(code) => write!(f, "gRPC {code:?}"),
            Outcome::NoAnswer(why) => write!(f, "no answer: {why}"),
        }
    }
}

impl Outcome {
    fn fits(&self, expect: Expect) -> bool {
        let accepted = matches!(self, Outcome::Http(200) | Outcome::Grpc(tonic::Code::Ok));
        let rejected = match self {
            Outcome::Http(s) => (400..500).contains(s),
            Outcome::Grpc(code) => grpc_client_error(*code),
            Outcome::HttpBusy | Outcome::NoAnswer(_) => false,
        };
        match expect {
            Expect::Accepted => accepted,
            Expect::Rejected => rejected,
            Expect::AcceptedOrRejected => accepted || rejected,
            Expect::RejectedOrBusy => rejected || matches!(self, Outcome::HttpBusy),
        }
    }
}

/// gRPC statuses that tell a client its request was wrong and must not be
/// retried as it is: INVALID_ARGUMENT, RESOURCE_EXHAUSTED (too large),
/// UNIMPLEMENTED (unknown method or encoding), and INTERNAL, which the gRPC
/// specification prescribes for a message that cannot be parsed or
/// decompressed (doc/statuscodes.md, doc/compression.md) and which OTLP
/// clients do not retry.
fn grpc_client_error(code: tonic::Code) -> bool {
    matches!(
        code,
        tonic::Code::InvalidArgument
            | tonic::Code::ResourceExhausted
            | tonic::Code::Unimplemented
            | tonic::Code::Internal
    )
}

/// One bad request and what it must get.
struct Case {
    name: String,
    expect: Expect,
    request: Request,
}

enum Request {
    /// A POST with headers and a body, through reqwest (HTTP/1.1 or h2c).
    Http {
        path: &'static str,
        headers: Vec<(&'static str, String)>,
        body: Bytes,
        h2: bool,
    },
    /// Bytes written on a raw connection, then (optionally) a half-close.
    Raw { bytes: Vec<u8>, half_close: bool },
    /// A message through tonic's framing.
    Grpc { path: &'static str, message: Bytes },
    /// A hand-made gRPC request body over h2c: any framing, any headers.
    GrpcRaw {
        path: &'static str,
        headers: Vec<(&'static str, String)>,
        body: Bytes,
    },
}

fn case(name: impl Into<String>, expect: Expect, request: Request) -> Case {
    Case {
        name: name.into(),
        expect,
        request,
    }
}

fn http(path: &'static str, content_type: &str, body: impl Into<Bytes>) -> Request {
    Request::Http {
        path,
        headers: vec![("content-type", content_type.to_string())],
        body: body.into(),
        h2: false,
    }
}

fn http_with(
    path: &'static str,
    headers: &[(&'static str, &str)],
    body: impl Into<Bytes>,
) -> Request {
    Request::Http {
        path,
        headers: headers.iter().map(|(n, v)| (*n, v.to_string())).collect(),
        body: body.into(),
        h2: false,
    }
}

const PROTO: &str = "application/x-protobuf";
const JSON: &str = "application/json";
const LOGS: &str = "/v1/logs";
const METRICS: &str = "/v1/metrics";

/// The agent and the clients that talk to it.
struct Harness {
    agent: Oomscope,
    rotel: Rotel,
    http: SocketAddr,
    grpc_endpoint: String,
    h1: reqwest::Client,
    h2: reqwest::Client,
    grpc: RawGrpc,
    /// Record bodies of the valid requests sent after each batch.
    markers: Mutex<Vec<String>>,
    failures: Mutex<Vec<String>>,
    cases_run: std::sync::atomic::AtomicUsize,
    watch: RssWatch,
}

impl Harness {
    async fn send(&self, request: &Request) -> Outcome {
        match request {
            Request::Http {
                path,
                headers,
                body,
                h2,
            } => {
                let client = if *h2 { &self.h2 } else { &self.h1 };
                let mut r = client
                    .post(format!("http://{}{path}", self.http))
                    .timeout(TIMEOUT)
                    .body(body.clone());
                for (n, v) in headers {
                    r = r.header(*n, v);
                }
                match r.send().await {
                    Ok(response) => {
                        let status = response.status().as_u16();
                        let retry_after = response.headers().contains_key("retry-after");
                        // Read the answer to its end: a complete response.
                        match response.bytes().await {
                            Ok(_) if status == 503 && retry_after => Outcome::HttpBusy,
                            Ok(_) => Outcome::Http(status),
                            Err(e) => Outcome::NoAnswer(format!("status {status}, body: {e}")),
                        }
                    }
                    Err(e) => Outcome::NoAnswer(format!("{e:?}")),
                }
            }
            Request::Raw { bytes, half_close } => {
                let (addr, bytes, half_close) = (self.http, bytes.clone(), *half_close);
                let answer = tokio::task::spawn_blocking(move || {
                    raw_http(addr, &bytes, half_close, TIMEOUT)
                })
                .await
                .expect("raw client");
                match answer {
                    Ok(r) if r.status == 503 && r.header("retry-after").is_some() => {
                        Outcome::HttpBusy
                    }
                    Ok(r) => Outcome::Http(r.status),
                    Err(e) => Outcome::NoAnswer(e),
                }
            }
            Request::Grpc { path, message } => {
                let mut grpc = self.grpc.clone();
                match tokio::time::timeout(TIMEOUT, grpc.call(path, message.clone())).await {
                    Ok(Ok(_)) => Outcome::Grpc(tonic::Code::Ok),
                    Ok(Err(status)) => Outcome::Grpc(status.code()),
                    Err(_) => Outcome::NoAnswer(format!("no answer within {TIMEOUT:?}")),
                }
            }
            Request::GrpcRaw {
                path,
                headers,
                body,
            } => {
                let mut r = self
                    .h2
                    .post(format!("{}{path}", self.grpc_endpoint))
                    .timeout(TIMEOUT)
                    .header("content-type", "application/grpc")
                    .header("te", "trailers")
                    .body(body.clone());
                for (n, v) in headers {
                    r = r.header(*n, v);
                }
                match r.send().await {
                    Ok(response) => {
                        let http_status = response.status().as_u16();
                        // Errors come trailers-only (grpc-status in the
                        // head); a success has it in the trailers, which
                        // reqwest does not show.
                        let code = response
                            .headers()
                            .get("grpc-status")
                            .and_then(|v| v.to_str().ok())
                            .and_then(|v| v.parse::<i32>().ok())
                            .map(tonic::Code::from_i32);
                        let body = response.bytes().await;
                        match (http_status, code, body) {
                            (_, _, Err(e)) => Outcome::NoAnswer(format!("body: {e}")),
                            (200, Some(code), _) => Outcome::Grpc(code),
                            (200, None, Ok(_)) => Outcome::Grpc(tonic::Code::Ok),
                            // Refused at the HTTP level (e.g. not gRPC).
                            (status, _, _) => Outcome::Http(status),
                        }
                    }
                    Err(e) => Outcome::NoAnswer(format!("{e:?}")),
                }
            }
        }
    }

    /// Sends every case, `concurrency` at a time, and notes each answer that
    /// does not fit.
    async fn run(&self, batch: &str, concurrency: usize, cases: Vec<Case>) {
        let n = cases.len();
        futures::stream::iter(cases)
            .for_each_concurrent(concurrency, |c| async move {
                let outcome = self.send(&c.request).await;
                self.cases_run
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if !outcome.fits(c.expect) {
                    let mut failures = self.failures.lock().await;
                    if failures.len() < 50 {
                        failures.push(format!(
                            "{batch}: {}: expected {:?}, got {outcome}",
                            c.name, c.expect
                        ));
                    }
                }
            })
            .await;
        self.check_still_serving(batch).await;
        eprintln!(
            "{TEST}: {batch}: {n} cases; peak RSS so far {} MiB",
            self.watch.now().peak() / MIB
        );
    }

    /// A valid request over each protocol and encoding is accepted at once
    /// (a 503 here would mean bad input left budget or memory behind).
    async fn check_still_serving(&self, batch: &str) {
        let tag = |what: &str| format!("check-{batch}-{what}");
        let json = |marker: &str| {
            format!(
                r#"{{"resourceLogs":[{{"scopeLogs":[{{"logRecords":[{{"body":{{"stringValue":"{marker}"}}}}]}}]}}]}}"#
            )
        };
        let checks = [
            (
                tag("http-proto"),
                http(
                    LOGS,
                    PROTO,
                    logs_request(&[tag("http-proto")]).encode_to_vec(),
                ),
            ),
            (tag("http-json"), http(LOGS, JSON, json(&tag("http-json")))),
            (
                tag("grpc"),
                Request::Grpc {
                    path: LOGS_EXPORT_PATH,
                    message: logs_request(&[tag("grpc")]).encode_to_vec().into(),
                },
            ),
        ];
        for (marker, request) in checks {
            let outcome = self.send(&request).await;
            if outcome.fits(Expect::Accepted) {
                self.markers.lock().await.push(marker);
            } else {
                self.failures
                    .lock()
                    .await
                    .push(format!("valid request {marker} after {batch}: {outcome}"));
            }
        }
    }
}

// ---------------------------------------------------------------------------
// The batches of bad input.

fn mutated_protobuf(rng: &mut StdRng, n: usize) -> Vec<Case> {
    (0..n)
        .map(|i| {
            let metrics = i % 4 == 3;
            let valid = if metrics {
                metrics_request(rng).encode_to_vec()
            } else {
                let records = rng.random_range(1..8);
                random_logs_proto(rng, records)
            };
            let body = mutate(rng, &valid);
            let path = if metrics { METRICS } else { LOGS };
            case(
                format!("mutated protobuf #{i} ({} bytes)", body.len()),
                Expect::AcceptedOrRejected,
                Request::Http {
                    path,
                    headers: vec![("content-type", PROTO.to_string())],
                    body: body.into(),
                    // Every fifth over HTTP/2 (h2c).
                    h2: i % 5 == 0,
                },
            )
        })
        .collect()
}

fn mutated_json(rng: &mut StdRng, n: usize) -> Vec<Case> {
    (0..n)
        .map(|i| {
            let metrics = i % 4 == 3;
            let valid = if metrics {
                metrics_json()
            } else {
                let records = rng.random_range(1..6);
                random_logs_json(rng, records)
            };
            let body = mutate(rng, &valid);
            case(
                format!(
                    "mutated JSON #{i}: {:?}",
                    String::from_utf8_lossy(&body[..body.len().min(120)])
                ),
                Expect::AcceptedOrRejected,
                http(if metrics { METRICS } else { LOGS }, JSON, body),
            )
        })
        .collect()
}

fn mutated_grpc(rng: &mut StdRng, n: usize) -> Vec<Case> {
    (0..n)
        .map(|i| {
            let metrics = i % 4 == 3;
            let valid = if metrics {
                metrics_request(rng).encode_to_vec()
            } else {
                let records = rng.random_range(1..8);
                random_logs_proto(rng, records)
            };
            let message = mutate(rng, &valid);
            case(
                format!("mutated gRPC message #{i}"),
                Expect::AcceptedOrRejected,
                Request::Grpc {
                    path: if metrics {
                        METRICS_EXPORT_PATH
                    } else {
                        LOGS_EXPORT_PATH
                    },
                    message: message.into(),
                },
            )
        })
        .collect()
}

/// Depths at which a value must be refused: prost refuses messages nested
/// more than 100 deep, serde_json JSON nested more than 128 deep.
const DEEP: &[usize] = &[100, 1_000, 5_000, 20_000];
/// Depths a client may well send; accepted or refused, as long as answered.
const SHALLOW: &[usize] = &[1, 8, 20, 40];

fn nested(kind: &str) -> Vec<Case> {
    let mut cases = Vec::new();
    for &depth in SHALLOW.iter().chain(DEEP) {
        let expect = if DEEP.contains(&depth) {
            Expect::Rejected
        } else {
            Expect::AcceptedOrRejected
        };
        for nesting in [Nesting::Array, Nesting::Kvlist, Nesting::Mixed] {
            for in_attribute in [false, true] {
                let body = nested_logs_proto(depth, nesting, in_attribute);
                let name = format!("{nesting:?} nested {depth} deep (attribute: {in_attribute})");
                match kind {
                    "http" => {
                        cases.push(case(name.clone(), expect, http(LOGS, PROTO, body.clone())));
                        cases.push(case(
                            format!("{name}, JSON"),
                            expect,
                            http(LOGS, JSON, nested_logs_json(depth, nesting)),
                        ));
                    }
                    _ => cases.push(case(
                        name,
                        expect,
                        Request::Grpc {
                            path: LOGS_EXPORT_PATH,
                            message: body.into(),
                        },
                    )),
                }
            }
        }
    }
    if kind == "http" {
        for &depth in DEEP {
            // Skipped without recursion (serde_json ignores values
            // iteratively), so accepted; refusing would be right too.
            cases.push(case(
                format!("unknown JSON field nested {depth} deep"),
                Expect::AcceptedOrRejected,
                http(LOGS, JSON, nested_unknown_json(depth)),
            ));
        }
    }
    cases
}

fn lying_lengths(kind: &str) -> Vec<Case> {
    lying_protobuf()
        .into_iter()
        .map(|(name, body)| match kind {
            "http" => case(name, Expect::Rejected, http(LOGS, PROTO, body)),
            _ => case(
                name,
                Expect::Rejected,
                Request::Grpc {
                    path: LOGS_EXPORT_PATH,
                    message: body.into(),
                },
            ),
        })
        .collect()
}

fn lying_encodings(rng: &mut StdRng) -> Vec<Case> {
    let valid = random_logs_proto(rng, 5);
    let valid_json = random_logs_json(rng, 5);
    let gz = gzip(&valid);
    let mut truncated_gzip = gz.clone();
    truncated_gzip.truncate(gz.len() / 2);
    let mut gzip_then_garbage = gz.clone();
    gzip_then_garbage.extend_from_slice(b"trailing garbage");
    let enc = |e: &str, body: Vec<u8>| {
        http_with(
            LOGS,
            &[("content-type", PROTO), ("content-encoding", e)],
            body,
        )
    };
    vec![
        case("valid gzip", Expect::Accepted, enc("gzip", gz.clone())),
        case(
            "valid zstd",
            Expect::Accepted,
            enc("zstd", zstd::encode_all(&valid[..], 3).expect("zstd")),
        ),
        case(
            "says gzip, is plain",
            Expect::Rejected,
            enc("gzip", valid.clone()),
        ),
        case(
            "says zstd, is plain",
            Expect::Rejected,
            enc("zstd", valid.clone()),
        ),
        case(
            "says deflate, is gzip",
            Expect::Rejected,
            enc("deflate", gz.clone()),
        ),
        case(
            "says identity, is gzip",
            Expect::Rejected,
            enc("identity", gz.clone()),
        ),
        case(
            "no Content-Encoding, is gzip",
            Expect::Rejected,
            http(LOGS, PROTO, gz.clone()),
        ),
        case(
            "says gzip, is gzip twice",
            Expect::Rejected,
            enc("gzip", gzip(&gz)),
        ),
        case(
            "says gzip, gzip cut in half",
            Expect::Rejected,
            enc("gzip", truncated_gzip),
        ),
        case(
            "says gzip, gzip then garbage",
            Expect::Rejected,
            enc("gzip", gzip_then_garbage),
        ),
        case(
            "says gzip, is JSON gzip of garbage",
            Expect::Rejected,
            http_with(
                LOGS,
                &[("content-type", JSON), ("content-encoding", "gzip")],
                gzip(b"{\"resourceLogs\":[{\"x"),
            ),
        ),
        case(
            "valid JSON, gzip",
            Expect::Accepted,
            http_with(
                LOGS,
                &[("content-type", JSON), ("content-encoding", "gzip")],
                gzip(&valid_json),
            ),
        ),
        case("says br", Expect::Rejected, enc("br", valid.clone())),
        case("says gzip, gzip", Expect::Rejected, enc("gzip, gzip", gz)),
        case(
            "Content-Encoding not text",
            Expect::Rejected,
            Request::Raw {
                bytes: [
                    post_head(
                        LOGS,
                        &[
                            "Content-Type: application/x-protobuf",
                            "Content-Encoding: g\u{00ff}zip",
                            &format!("Content-Length: {}", valid.len()),
                        ],
                    ),
                    valid.clone(),
                ]
                .concat(),
                half_close: false,
            },
        ),
        case(
            "gzip bomb (64 MiB of zeros)",
            Expect::Rejected,
            enc("gzip", gzip_zeros(64 << 20)),
        ),
        case(
            "zstd bomb (256 MiB of zeros)",
            Expect::Rejected,
            enc("zstd", zstd_zeros(256 << 20)),
        ),
        case(
            "zstd frame asking for a 2 GiB window",
            Expect::Rejected,
            enc("zstd", zstd_huge_window()),
        ),
    ]
}

/// Bombs that inflate to just under the body limit, many at once: each
/// passes the size check, so only the receiver's budget bounds how many
/// inflate at the same time.
fn concurrent_bombs() -> Vec<Case> {
    let gz = Bytes::from(gzip_zeros(BODY_LIMIT - 4096));
    let zs = Bytes::from(zstd_zeros(BODY_LIMIT - 4096));
    (0..48)
        .map(|i| {
            let (encoding, body) = if i % 2 == 0 {
                ("gzip", gz.clone())
            } else {
                ("zstd", zs.clone())
            };
            case(
                format!("{encoding} bomb just under the limit #{i}"),
                Expect::RejectedOrBusy,
                Request::Http {
                    path: LOGS,
                    headers: vec![
                        ("content-type", PROTO.to_string()),
                        ("content-encoding", encoding.to_string()),
                    ],
                    body,
                    h2: i % 3 == 0,
                },
            )
        })
        .collect()
}

fn lying_content_length(rng: &mut StdRng) -> Vec<Case> {
    // The last record's body is long, so that a cut near the end falls
    // inside a string: the cut body cannot be valid.
    let mut bodies: Vec<String> = (0..3).map(|i| format!("record {i}")).collect();
    bodies.push("z".repeat(400));
    let valid = logs_request(&bodies).encode_to_vec();
    let len = valid.len();
    let head = |cl: &str| {
        post_head(
            LOGS,
            &[
                "Content-Type: application/x-protobuf",
                &format!("Content-Length: {cl}"),
            ],
        )
    };
    let raw = |h: Vec<u8>, body: &[u8], half_close: bool| Request::Raw {
        bytes: [h, body.to_vec()].concat(),
        half_close,
    };
    let cut = rng.random_range(len - 300..len - 10);
    vec![
        case(
            "Content-Length 100 more than sent (client done)",
            Expect::Rejected,
            raw(head(&(len + 100).to_string()), &valid, true),
        ),
        case(
            "Content-Length 1 GiB, little sent (client done)",
            Expect::Rejected,
            raw(head("1073741824"), &valid, true),
        ),
        case(
            "Content-Length 10^15",
            Expect::Rejected,
            raw(head("1000000000000000"), &valid, false),
        ),
        case(
            format!("Content-Length {cut} of {len} (cut inside a string)"),
            Expect::Rejected,
            raw(head(&cut.to_string()), &valid, false),
        ),
        case(
            "Content-Length not a number",
            Expect::Rejected,
            raw(head("abc"), &valid, false),
        ),
        case(
            "Content-Length negative",
            Expect::Rejected,
            raw(head("-5"), &valid, false),
        ),
        case(
            "Content-Length overflowing u64",
            Expect::Rejected,
            raw(head("99999999999999999999999"), &valid, false),
        ),
        case(
            "two different Content-Lengths",
            Expect::Rejected,
            raw(
                post_head(
                    LOGS,
                    &[
                        "Content-Type: application/x-protobuf",
                        &format!("Content-Length: {len}"),
                        &format!("Content-Length: {}", len - 1),
                    ],
                ),
                &valid,
                false,
            ),
        ),
        case(
            "Content-Length and chunked",
            Expect::AcceptedOrRejected,
            raw(
                post_head(
                    LOGS,
                    &[
                        "Content-Type: application/x-protobuf",
                        "Content-Length: 3",
                        "Transfer-Encoding: chunked",
                    ],
                ),
                &chunked(&valid, 100),
                false,
            ),
        ),
        case(
            "valid Content-Length (control)",
            Expect::Accepted,
            raw(head(&len.to_string()), &valid, false),
        ),
    ]
}

fn chunked_bodies(rng: &mut StdRng) -> Vec<Case> {
    let valid = random_logs_proto(rng, 20);
    let head = |extra: &[&str]| {
        let mut h = vec!["Content-Type: application/x-protobuf"];
        h.extend_from_slice(extra);
        post_head(LOGS, &h)
    };
    let te = "Transfer-Encoding: chunked";
    let raw = |h: Vec<u8>, body: Vec<u8>, half_close: bool| Request::Raw {
        bytes: [h, body].concat(),
        half_close,
    };
    let mut unterminated = chunked(&valid, 64);
    unterminated.truncate(unterminated.len() - 5);
    let mut lying_chunk = b"100\r\n".to_vec();
    lying_chunk.extend_from_slice(&valid[..10.min(valid.len())]);
    lying_chunk.extend_from_slice(b"\r\n0\r\n\r\n");
    let big = vec![0u8; BODY_LIMIT + (1 << 20)];
    vec![
        case(
            "valid chunked (control)",
            Expect::Accepted,
            raw(head(&[te]), chunked(&valid, 7), false),
        ),
        case(
            "chunk size not hex",
            Expect::Rejected,
            raw(head(&[te]), b"zz\r\nabc\r\n0\r\n\r\n".to_vec(), false),
        ),
        case(
            "chunk size overflowing",
            Expect::Rejected,
            raw(
                head(&[te]),
                b"fffffffffffffffffffffff\r\nabc\r\n0\r\n\r\n".to_vec(),
                false,
            ),
        ),
        case(
            "chunk shorter than its size",
            Expect::Rejected,
            raw(head(&[te]), lying_chunk, true),
        ),
        case(
            "no last chunk (client done)",
            Expect::Rejected,
            raw(head(&[te]), unterminated, true),
        ),
        case(
            "chunked body over the limit",
            Expect::Rejected,
            raw(head(&[te]), chunked(&big, 1 << 16), false),
        ),
        case(
            "chunked with extensions",
            Expect::Accepted,
            raw(
                head(&[te]),
                [
                    format!("{:x};name=value\r\n", valid.len()).into_bytes(),
                    valid.clone(),
                    b"\r\n0\r\n\r\n".to_vec(),
                ]
                .concat(),
                false,
            ),
        ),
        case(
            "transfer coding gzip, chunked",
            Expect::Rejected,
            raw(
                head(&["Transfer-Encoding: gzip, chunked"]),
                chunked(&gzip(&valid), 50),
                false,
            ),
        ),
        case(
            "unknown transfer coding",
            Expect::Rejected,
            raw(head(&["Transfer-Encoding: snappy"]), valid.clone(), false),
        ),
    ]
}

fn bad_requests(rng: &mut StdRng) -> Vec<Case> {
    let valid = random_logs_proto(rng, 3);
    let json = random_logs_json(rng, 3);
    let ct = |t: &str, body: &[u8]| http(LOGS, t, body.to_vec());
    let huge_header = "x".repeat(256 << 10);
    let many_headers: Vec<String> = (0..300).map(|i| format!("X-H{i}: v")).collect();
    let many_refs: Vec<&str> = many_headers.iter().map(String::as_str).collect();
    vec![
        case("text/plain", Expect::Rejected, ct("text/plain", &valid)),
        case(
            "no Content-Type",
            Expect::Rejected,
            http_with(LOGS, &[], valid.clone()),
        ),
        case("application/grpc on HTTP", Expect::Rejected, ct("application/grpc", &valid)),
        case("JSON body said to be protobuf", Expect::Rejected, ct(PROTO, &json)),
        case("protobuf body said to be JSON", Expect::Rejected, ct(JSON, &valid)),
        case(
            "protobuf with parameters",
            Expect::Accepted,
            ct("application/x-protobuf; foo=bar", &valid),
        ),
        case("empty JSON body", Expect::Rejected, ct(JSON, b"")),
        case("JSON null", Expect::AcceptedOrRejected, ct(JSON, b"null")),
        case("JSON array", Expect::Rejected, ct(JSON, b"[]")),
        case(
            "JSON with a lone surrogate",
            Expect::Rejected,
            ct(
                JSON,
                br#"{"resourceLogs":[{"scopeLogs":[{"logRecords":[{"body":{"stringValue":"\ud800"}}]}]}]}"#,
            ),
        ),
        case(
            "JSON number too large",
            Expect::Rejected,
            ct(
                JSON,
                br#"{"resourceLogs":[{"scopeLogs":[{"logRecords":[{"timeUnixNano":"99999999999999999999999"}]}]}]}"#,
            ),
        ),
        case(
            "JSON bad hex trace id",
            Expect::AcceptedOrRejected,
            ct(
                JSON,
                br#"{"resourceLogs":[{"scopeLogs":[{"logRecords":[{"traceId":"zz","spanId":"123"}]}]}]}"#,
            ),
        ),
        case(
            "JSON bad base64",
            Expect::Rejected,
            ct(
                JSON,
                br#"{"resourceLogs":[{"scopeLogs":[{"logRecords":[{"body":{"bytesValue":"!!!"}}]}]}]}"#,
            ),
        ),
        case(
            "wrong method",
            Expect::Rejected,
            Request::Raw {
                bytes: b"PUT /v1/logs HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                    .to_vec(),
                half_close: false,
            },
        ),
        case("traces", Expect::Rejected, http("/v1/traces", PROTO, valid.clone())),
        case("unknown path", Expect::Rejected, http("/v1/nope", PROTO, valid.clone())),
        case(
            "header of 256 KiB",
            Expect::Rejected,
            Request::Raw {
                bytes: post_head(LOGS, &[&format!("X-Big: {huge_header}"), "Content-Length: 0"]),
                half_close: false,
            },
        ),
        case(
            "300 headers",
            Expect::Rejected,
            Request::Raw {
                bytes: post_head(LOGS, &many_refs),
                half_close: false,
            },
        ),
        case(
            "not HTTP at all",
            Expect::Rejected,
            Request::Raw {
                bytes: b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03garbage\r\n\r\n".to_vec(),
                half_close: false,
            },
        ),
        case(
            "request line of 100 KiB",
            Expect::Rejected,
            Request::Raw {
                bytes: format!("POST /{} HTTP/1.1\r\nHost: t\r\n\r\n", "a".repeat(100 << 10))
                    .into_bytes(),
                half_close: false,
            },
        ),
        case(
            "body over the limit",
            Expect::Rejected,
            http(LOGS, PROTO, vec![0u8; BODY_LIMIT + 1]),
        ),
    ]
}

/// gRPC requests framed by hand.
fn grpc_framing(rng: &mut StdRng) -> Vec<Case> {
    use common::adversarial::{grpc_frame, grpc_message};
    let valid = random_logs_proto(rng, 4);
    let len = valid.len() as u32;
    let raw = |headers: &[(&'static str, &str)], body: Vec<u8>| Request::GrpcRaw {
        path: LOGS_EXPORT_PATH,
        headers: headers.iter().map(|(n, v)| (*n, v.to_string())).collect(),
        body: body.into(),
    };
    let gz_frame = |payload: &[u8]| {
        let z = gzip(payload);
        grpc_frame(1, z.len() as u32, &z)
    };
    let zs = zstd_zeros(64 << 20);
    let gzb = gzip_zeros(64 << 20);
    let mut cases = vec![
        case(
            "valid frame (control)",
            Expect::Accepted,
            raw(&[], grpc_message(&valid)),
        ),
        case(
            "valid gzip frame (control)",
            Expect::Accepted,
            raw(&[("grpc-encoding", "gzip")], gz_frame(&valid)),
        ),
        case(
            "compressed flag without grpc-encoding",
            Expect::Rejected,
            raw(&[], grpc_frame(1, len, &valid)),
        ),
        case(
            "compressed flag, data not gzip",
            Expect::Rejected,
            raw(&[("grpc-encoding", "gzip")], grpc_frame(1, len, &valid)),
        ),
        case(
            "grpc-encoding snappy",
            Expect::Rejected,
            raw(&[("grpc-encoding", "snappy")], grpc_frame(1, len, &valid)),
        ),
        case(
            "declared length 4 GiB - 1",
            Expect::Rejected,
            raw(&[], grpc_frame(0, u32::MAX, &valid)),
        ),
        case(
            "declared length just under the limit, short data",
            Expect::Rejected,
            raw(&[], grpc_frame(0, (4 << 20) - 1, &valid)),
        ),
        case(
            "declared length shorter than the data",
            Expect::AcceptedOrRejected,
            raw(&[], grpc_frame(0, len / 2, &valid)),
        ),
        case(
            "frame header cut short",
            Expect::Rejected,
            raw(&[], vec![0, 0, 0]),
        ),
        case("no message at all", Expect::Rejected, raw(&[], Vec::new())),
        case(
            "two messages in a unary call",
            Expect::AcceptedOrRejected,
            raw(&[], [grpc_message(&valid), grpc_message(&valid)].concat()),
        ),
        case(
            "zstd bomb (64 MiB of zeros)",
            Expect::Rejected,
            raw(
                &[("grpc-encoding", "zstd")],
                grpc_frame(1, zs.len() as u32, &zs),
            ),
        ),
        case(
            "gzip bomb (64 MiB of zeros)",
            Expect::Rejected,
            raw(
                &[("grpc-encoding", "gzip")],
                grpc_frame(1, gzb.len() as u32, &gzb),
            ),
        ),
        case(
            "unknown method",
            Expect::Rejected,
            Request::GrpcRaw {
                path: "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
                headers: Vec::new(),
                body: grpc_message(&valid).into(),
            },
        ),
        // tonic does not look at the content type; the message is valid.
        case(
            "content-type application/json",
            Expect::AcceptedOrRejected,
            raw(
                &[("content-type", "application/json")],
                grpc_message(&valid),
            ),
        ),
    ];
    for flag in [2u8, 0x80, 0xff] {
        cases.push(case(
            format!("compression flag {flag}"),
            Expect::Rejected,
            raw(&[], grpc_frame(flag, len, &valid)),
        ));
    }
    cases
}

/// gRPC messages that inflate to just under the message limit, many at once.
fn grpc_bombs() -> Vec<Case> {
    let under = zstd_zeros((4 << 20) - 64);
    let gz = gzip_zeros((4 << 20) - 64);
    (0..48)
        .map(|i| {
            let (encoding, bomb) = if i % 2 == 0 {
                ("zstd", &under)
            } else {
                ("gzip", &gz)
            };
            case(
                format!("{encoding} bomb just under the limit #{i}"),
                Expect::Rejected,
                Request::GrpcRaw {
                    path: LOGS_EXPORT_PATH,
                    headers: vec![("grpc-encoding", encoding.to_string())],
                    body: common::adversarial::grpc_frame(1, bomb.len() as u32, bomb).into(),
                },
            )
        })
        .collect()
}

// ---------------------------------------------------------------------------
// Bad input from real clients: curl (HTTP/1.1 and h2c) and Python's grpcio.

/// Sends each message of `dir` (files named `<expect>-<n>`) to the gRPC
/// export method with grpcio, gzip-compressed when the name says so, and
/// prints one `name code` line per message.
const GRPCIO_SEND: &str = r#"
import os, sys, grpc
target, d = sys.argv[1], sys.argv[2]
channel = grpc.insecure_channel(target)
export = channel.unary_unary("/opentelemetry.proto.collector.logs.v1.LogsService/Export")
for name in sorted(os.listdir(d)):
    data = open(os.path.join(d, name), "rb").read()
    compression = grpc.Compression.Gzip if "gzip" in name else None
    try:
        export(data, timeout=60, compression=compression)
        code = "OK"
    except grpc.RpcError as e:
        code = e.code().name
    print(name, code, flush=True)
"#;

impl Harness {
    /// Bad input sent by curl and by grpcio, so that what a real client
    /// library does with the agent's answers is seen too (an early 413 to a
    /// client that sends `Expect: 100-continue`, statuses as grpcio reads
    /// them).
    async fn run_peers(&self, rng: &mut StdRng, dir: &std::path::Path) {
        let batch = "bad input from curl and grpcio";
        let valid = random_logs_proto(rng, 10);
        let write = |name: &str, data: &[u8]| {
            let path = dir.join(name);
            std::fs::write(&path, data).expect("write");
            path
        };
        let url = format!("http://{}{LOGS}", self.http);
        let proto = format!("Content-Type: {PROTO}");
        let curl_cases: Vec<(&str, Expect, Vec<String>)> = vec![
            (
                "curl: gzip bomb",
                Expect::Rejected,
                vec![
                    "-H".into(),
                    "Content-Encoding: gzip".into(),
                    "--data-binary".into(),
                    format!("@{}", write("bomb.gz", &gzip_zeros(64 << 20)).display()),
                ],
            ),
            (
                "curl: body over the limit (Expect: 100-continue)",
                Expect::Rejected,
                vec![
                    "--data-binary".into(),
                    format!("@{}", write("big", &vec![0u8; BODY_LIMIT + 1]).display()),
                ],
            ),
            (
                "curl: says gzip, is not",
                Expect::Rejected,
                vec![
                    "-H".into(),
                    "Content-Encoding: gzip".into(),
                    "--data-binary".into(),
                    format!("@{}", write("plain", &valid).display()),
                ],
            ),
            (
                "curl: chunked upload",
                Expect::Accepted,
                vec![
                    "-H".into(),
                    "Transfer-Encoding: chunked".into(),
                    "--data-binary".into(),
                    format!("@{}", write("chunked", &valid).display()),
                ],
            ),
            (
                "curl: h2c, mutated",
                Expect::AcceptedOrRejected,
                vec![
                    "--http2-prior-knowledge".into(),
                    "--data-binary".into(),
                    format!("@{}", write("mutated", &mutate(rng, &valid)).display()),
                ],
            ),
        ];
        let mut failures = Vec::new();
        for (name, expect, args) in curl_cases {
            let out = tokio::process::Command::new("curl")
                .args(["-sS", "-o", "/dev/null", "-w", "%{http_code}", "-m", "60"])
                .args(["-H", &proto])
                .args(&args)
                .arg(&url)
                .output()
                .await
                .expect("run curl");
            let code: u16 = String::from_utf8_lossy(&out.stdout)
                .trim()
                .parse()
                .unwrap_or(0);
            let outcome = if code == 0 {
                Outcome::NoAnswer(String::from_utf8_lossy(&out.stderr).into_owned())
            } else {
                Outcome::Http(code)
            };
            if !outcome.fits(expect) {
                failures.push(format!(
                    "{batch}: {name}: expected {expect:?}, got {outcome}"
                ));
            }
        }

        // grpcio: mutated, nested and lying messages, some gzip-compressed.
        let messages = dir.join("grpc");
        std::fs::create_dir_all(&messages).expect("mkdir");
        let mut expected = std::collections::HashMap::new();
        let mut put = |name: String, expect: Expect, data: Vec<u8>| {
            std::fs::write(messages.join(&name), data).expect("write");
            expected.insert(name, expect);
        };
        for i in 0..300 {
            let gz = if i % 3 == 0 { "-gzip" } else { "" };
            put(
                format!("mutated-{i:03}{gz}"),
                Expect::AcceptedOrRejected,
                mutate(rng, &valid),
            );
        }
        for depth in [1_000, 20_000] {
            put(
                format!("nested-{depth}"),
                Expect::Rejected,
                nested_logs_proto(depth, Nesting::Mixed, false),
            );
        }
        for (i, (_, data)) in lying_protobuf().into_iter().enumerate() {
            put(format!("lying-{i:02}"), Expect::Rejected, data);
        }
        put("valid-gzip".into(), Expect::Accepted, valid.clone());
        let target = self.grpc_endpoint.trim_start_matches("http://").to_string();
        let out = common::python::run_python(
            GRPCIO_SEND,
            &[&target, &messages.to_string_lossy()],
            Duration::from_secs(600),
        )
        .await;
        let stdout = String::from_utf8_lossy(&out.stdout);
        let mut answered = 0;
        for line in stdout.lines() {
            let Some((name, code)) = line.split_once(' ') else {
                continue;
            };
            answered += 1;
            let expect = expected.get(name).copied().unwrap_or(Expect::Accepted);
            let fits = match (expect, code) {
                (Expect::Accepted, c) => c == "OK",
                (Expect::Rejected, c) => grpcio_client_error(c),
                (_, c) => c == "OK" || grpcio_client_error(c),
            };
            if !fits {
                failures.push(format!(
                    "{batch}: grpcio {name}: expected {expect:?}, got {code}"
                ));
            }
        }
        if answered != expected.len() {
            failures.push(format!(
                "{batch}: grpcio answered {answered} of {} messages:\n{stdout}\n{}",
                expected.len(),
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        let n = 5 + expected.len();
        self.cases_run
            .fetch_add(n, std::sync::atomic::Ordering::Relaxed);
        self.failures.lock().await.extend(failures);
        self.check_still_serving(batch).await;
        eprintln!(
            "{TEST}: {batch}: {n} cases; peak RSS so far {} MiB",
            self.watch.now().peak() / MIB
        );
    }
}

/// [`grpc_client_error`] by the names grpcio gives the codes.
fn grpcio_client_error(code: &str) -> bool {
    matches!(
        code,
        "INVALID_ARGUMENT" | "RESOURCE_EXHAUSTED" | "UNIMPLEMENTED" | "INTERNAL"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn adversarial_input_gets_clear_answers_and_the_agent_keeps_serving() {
    let rotel = Rotel::start();
    let (grpc, http_port, health) = (free_port(), free_port(), free_port());
    let dir = tempfile::tempdir().expect("tempdir");
    let config = format!(
        r#"
receivers:
  otlp:
    protocols:
      grpc: {{ endpoint: "127.0.0.1:{grpc}" }}
      http: {{ endpoint: "127.0.0.1:{http_port}" }}
processors:
  memory_limiter: {{ check_interval: 1s, limit_mib: 256, spike_limit_mib: 64 }}
  resource: {{}}
  batch: {{ timeout: 100ms }}
exporters:
  otlp:
    endpoint: "{rotel}"
    tls: {{ insecure: true }}
  file: {{ path: "{out}", flush_interval: 100ms }}
  debug: {{ verbosity: detailed }}
extensions:
  health_check: {{ endpoint: "127.0.0.1:{health}" }}
service:
  extensions: [health_check]
  telemetry: {{ metrics: {{ address: "" }} }}
  oom_score_adj: null
  pipelines:
    logs: {{ receivers: [otlp], processors: [memory_limiter, resource, batch], exporters: [otlp, file, debug] }}
    metrics: {{ receivers: [otlp], processors: [memory_limiter, resource, batch], exporters: [otlp, file, debug] }}
"#,
        rotel = rotel.grpc_addr(),
        out = dir.path().join("out.jsonl").display(),
    );
    let mut agent = Oomscope::start(&config, &[]);
    let Some(_cgroup) = confine(agent.pid(), CGROUP_LIMIT) else {
        skip(
            TEST,
            "no memory cgroup to confine the agent in (needs root and a memory controller)",
        );
        return;
    };
    agent.wait_healthy(health, TIMEOUT);
    let watch = RssWatch::start(agent.pid());
    eprintln!("{TEST}: RSS at the start {} MiB", watch.now().peak() / MIB);
    let grpc_endpoint = format!("http://127.0.0.1:{grpc}");
    let harness = Harness {
        grpc: RawGrpc::connect(&grpc_endpoint).await.expect("connect"),
        agent,
        rotel,
        http: addr(http_port),
        grpc_endpoint,
        h1: reqwest::Client::builder()
            .http1_only()
            .build()
            .expect("client"),
        h2: reqwest::Client::builder()
            .http2_prior_knowledge()
            .build()
            .expect("client"),
        markers: Mutex::new(Vec::new()),
        failures: Mutex::new(Vec::new()),
        cases_run: Default::default(),
        watch,
    };
    let h = &harness;
    let mut rng = seeded_rng(TEST);
    let started = Instant::now();

    // A client that declares more body than it sends and keeps the
    // connection open looks like a slow one: it is answered once the body
    // read times out (30 s), while the rest goes on.
    let slow_valid = logs_request(&["slow".to_string()]).encode_to_vec();
    let slow = {
        let bytes = [
            post_head(
                LOGS,
                &[
                    "Content-Type: application/x-protobuf",
                    &format!("Content-Length: {}", slow_valid.len() + 100),
                ],
            ),
            slow_valid,
        ]
        .concat();
        let addr = h.http;
        tokio::task::spawn_blocking(move || raw_http(addr, &bytes, false, TIMEOUT))
    };

    let all = CONCURRENCY;
    h.run("mutated protobuf", all, mutated_protobuf(&mut rng, 1500))
        .await;
    h.run("mutated JSON", all, mutated_json(&mut rng, 1500))
        .await;
    h.run("mutated gRPC", all, mutated_grpc(&mut rng, 1500))
        .await;
    h.run("nested values over HTTP", all, nested("http")).await;
    h.run("nested values over gRPC", all, nested("grpc")).await;
    h.run("lying protobuf lengths over HTTP", 1, lying_lengths("http"))
        .await;
    h.run("lying protobuf lengths over gRPC", 1, lying_lengths("grpc"))
        .await;
    h.run("lying Content-Encoding", 1, lying_encodings(&mut rng))
        .await;
    h.run("bombs at once", all, concurrent_bombs()).await;
    h.run("lying Content-Length", 1, lying_content_length(&mut rng))
        .await;
    h.run("chunked bodies", 1, chunked_bodies(&mut rng)).await;
    h.run("bad requests", 1, bad_requests(&mut rng)).await;
    h.run("gRPC framing", 1, grpc_framing(&mut rng)).await;
    h.run("gRPC bombs at once", all, grpc_bombs()).await;
    h.run_peers(&mut rng, dir.path()).await;

    let slow: Result<RawResponse, String> = slow.await.expect("slow client");
    let markers = harness.markers.lock().await.clone();
    let received = harness.rotel.wait_for(TIMEOUT, |_| {
        let raw = harness.rotel.raw_output();
        markers.iter().all(|m| raw.contains(m.as_str()))
    });
    drop(received);
    let Harness {
        mut agent,
        failures,
        cases_run,
        watch,
        ..
    } = harness;
    let peak = watch.finish();
    agent.wait_healthy(health, TIMEOUT);
    let failures = failures.into_inner();
    let (status, clean) = agent.stop(TIMEOUT);
    let output = agent.output();
    eprintln!(
        "{TEST}: {} bad requests in {:.0?}; peak RSS {} MiB (sampled {} MiB, VmHWM {} MiB)",
        cases_run.into_inner(),
        started.elapsed(),
        peak.peak() / MIB,
        peak.max_sampled / MIB,
        peak.hwm / MIB
    );

    assert!(
        failures.is_empty(),
        "{} answers did not fit:\n{}",
        failures.len(),
        failures.join("\n")
    );
    let slow = slow.expect("the slow client is answered");
    assert_eq!(slow.status, 503, "{slow:?}");
    assert!(slow.header("retry-after").is_some(), "{slow:?}");
    assert!(
        !output.contains("panicked"),
        "the agent panicked:\n{}",
        output
            .lines()
            .filter(|l| l.contains("panicked"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(
        peak.peak() < RSS_BOUND,
        "peak RSS {} MiB is not under {} MiB",
        peak.peak() / MIB,
        RSS_BOUND / MIB
    );
    assert!(clean && status.success(), "{status:?}");
}

/// The generators build what they claim: the hand-encoded nested values
/// decode (with prost and serde_json) to the depth asked for.
#[test]
fn nested_generators_nest_as_deep_as_asked() {
    use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
    use opentelemetry_proto::tonic::common::v1::{any_value::Value, AnyValue};
    fn depth(v: &AnyValue) -> usize {
        match &v.value {
            Some(Value::ArrayValue(a)) => 1 + a.values.first().map_or(0, depth),
            Some(Value::KvlistValue(l)) => {
                1 + l
                    .values
                    .first()
                    .and_then(|kv| kv.value.as_ref())
                    .map_or(0, depth)
            }
            Some(Value::StringValue(s)) if s == "leaf" => 0,
            other => panic!("unexpected {other:?}"),
        }
    }
    for nesting in [Nesting::Array, Nesting::Kvlist, Nesting::Mixed] {
        for in_attribute in [false, true] {
            let bytes = nested_logs_proto(12, nesting, in_attribute);
            let r = ExportLogsServiceRequest::decode(&bytes[..]).expect("decodes");
            let record = &r.resource_logs[0].scope_logs[0].log_records[0];
            let value = if in_attribute {
                record.attributes[0]
                    .value
                    .as_ref()
                    .expect("attribute value")
            } else {
                record.body.as_ref().expect("body")
            };
            assert_eq!(depth(value), 12, "{nesting:?} attribute={in_attribute}");
        }
        let json = nested_logs_json(12, nesting);
        let v: serde_json::Value = serde_json::from_slice(&json).expect("JSON");
        let mut body = &v["resourceLogs"][0]["scopeLogs"][0]["logRecords"][0]["body"];
        let mut levels = 0;
        loop {
            if let Some(inner) = body["arrayValue"]["values"].get(0) {
                body = inner;
            } else if let Some(inner) = body["kvlistValue"]["values"].get(0) {
                body = &inner["value"];
            } else {
                break;
            }
            levels += 1;
        }
        assert_eq!(levels, 12, "{nesting:?} JSON");
        assert_eq!(body["stringValue"], "leaf");
    }
}
